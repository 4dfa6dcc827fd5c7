package main

func init() { suites["orchestration"] = orchestration }

func orchestration(e *Env, r *Report) {}
