package main

func init() { suites["read"] = read }

func read(e *Env, r *Report) {}
