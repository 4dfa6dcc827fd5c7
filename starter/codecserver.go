package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/converter"
)

// codecServerCmd serves the payload codec over HTTP, so that the temporal CLI (--codec-endpoint) and
// the Temporal Web UI (its codec endpoint setting) can show payloads that the registry encrypted
// (MODELREG_PAYLOAD_KEY). Anyone who can reach it can decrypt, so it listens on loopback by default.
func (a *app) codecServerCmd() *cobra.Command {
	var listen, origin string
	cmd := &cobra.Command{
		Use:   "codec-server [--listen 127.0.0.1:8081] [--allow-origin http://127.0.0.1:8233]",
		Short: "Serve the payload codec (POST /encode, /decode) for temporal --codec-endpoint and the Web UI",
		Long: `With MODELREG_PAYLOAD_KEY set, workflow payloads are encrypted in Temporal's history. This serves
the codec that decrypts them:

  temporal workflow show --workflow-id model/fraud/v1 --codec-endpoint http://127.0.0.1:8081

Anyone who can reach the endpoint can decrypt payloads: keep it on loopback, or put it behind your
authentication. --allow-origin lets the Temporal Web UI at that origin call it from the browser.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cd, err := a.cfg.Codec()
			if err != nil {
				return err
			}
			if cd == nil {
				return errors.New("no payload key is configured (MODELREG_PAYLOAD_KEY): payloads are not encrypted, so there is nothing to decode")
			}
			handler := http.Handler(converter.NewPayloadCodecHTTPHandler(cd))
			if origin != "" {
				handler = allowOrigin(origin, handler)
			}
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
			fmt.Fprintf(a.out, "codec server on http://%s (key id %s; decodes %v)\n", l.Addr(), cd.KeyID(), cd.KeyIDs())
			go func() {
				<-cmd.Context().Done()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
			}()
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8081", "address to listen on")
	cmd.Flags().StringVar(&origin, "allow-origin", "", "CORS origin allowed to call the codec (the Temporal Web UI's URL)")
	return cmd
}

// allowOrigin answers CORS preflights for origin and marks responses to it as readable there.
func allowOrigin(origin string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") == origin {
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Set("Access-Control-Allow-Credentials", "true")
			w.Header().Set("Vary", "Origin")
			if r.Method == http.MethodOptions {
				w.Header().Set("Access-Control-Allow-Methods", "POST")
				w.Header().Set("Access-Control-Allow-Headers", "Content-Type, X-Namespace, Authorization")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
