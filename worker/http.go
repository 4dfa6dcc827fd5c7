package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/user"
	"path/filepath"
	"time"

	"golang.org/x/net/netutil"

	"github.com/modelreg/modelreg/internal/api"
	"github.com/modelreg/modelreg/internal/artifact"
	"github.com/modelreg/modelreg/internal/catalog"
	"github.com/modelreg/modelreg/internal/metrics"
)

type httpOptions struct {
	Addr, DataDir, TokensFile string
	Sources                   []string
	Dev                       bool
	Catalog                   *catalog.Catalog
	Store                     artifact.Store
	Metrics                   *metrics.Registry
}

// serveHTTP starts the API server and returns it and the function that stops it gracefully.
func serveHTTP(ctx context.Context, logger *slog.Logger, o httpOptions) (*api.Server, func(), error) {
	var auth *api.Authenticator
	var err error
	switch {
	case o.TokensFile != "":
		if auth, err = api.LoadTokenFile(o.TokensFile); err != nil {
			return nil, nil, err
		}
	case o.Dev:
		tokenPath := filepath.Join(o.DataDir, "api-token")
		name := "dev"
		if u, err := user.Current(); err == nil && u.Username != "" {
			name = u.Username
		}
		if auth, err = api.DevTokens(tokenPath, name); err != nil {
			return nil, nil, err
		}
		logger.Info("HTTP API token (admin on every model) for the embedded default", "principal", name, "tokenFile", tokenPath)
	default:
		logger.Warn("no MODELREG_API_TOKENS_FILE: the HTTP API serves reads only and refuses every write")
	}
	srv := api.New(api.Options{Catalog: o.Catalog, Store: o.Store, Sources: o.Sources, Auth: auth, Logger: logger, Metrics: o.Metrics})
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("HTTP API: %w", err)
	}
	// Bounded connections: past the limit new ones wait in the kernel's backlog instead of taking the
	// process's last file descriptors, which would stop every route, health checks included.
	ln = netutil.LimitListener(ln, maxConnections)
	hs := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// A body must arrive within this (streamed uploads push the deadline on while bytes flow): a
		// client that announces a body and sends none holds its connection no longer. Long polls hold
		// a response up to api.MaxWait, so both are above it.
		ReadTimeout:  api.MaxWait + 30*time.Second,
		WriteTimeout: api.MaxWait + 30*time.Second,
		IdleTimeout:  2 * time.Minute,
	}
	wctx, cancel := context.WithCancel(ctx)
	go srv.Run(wctx)
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("HTTP API stopped", "error", err.Error())
		}
	}()
	logger.Info("HTTP API serving", "url", "http://"+ln.Addr().String(), "openapi", "http://"+ln.Addr().String()+api.OpenAPIPath+".json")
	return srv, func() {
		cancel()
		sctx, c2 := context.WithTimeout(context.Background(), 5*time.Second)
		defer c2()
		_ = hs.Shutdown(sctx)
	}, nil
}

// maxConnections bounds the API's open connections (long polls included), well below the usual
// descriptor limits.
const maxConnections = 4096

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
