// Command ferretdb-sqlite runs embedded FerretDB v1 with its SQLite backend.
//
// It exists because `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.x`
// produces a binary that panics at start (build/version/version.txt is generated
// and absent from the module); the embeddable package has no such check.
//
// Usage: ferretdb-sqlite -listen 127.0.0.1:27017 -dir /path/to/data
// Runs until SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to listen on")
	dir := flag.String("dir", "data", "directory for the SQLite databases (created if missing)")
	debug := flag.Bool("debug", false, "debug logging")
	flag.Parse()

	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)

	abs, err := filepath.Abs(*dir)
	if err != nil {
		fail(err)
	}
	if err = os.MkdirAll(abs, 0o755); err != nil {
		fail(err)
	}

	f, err := ferretdb.New(&ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listen},
		Logger:   logger,
		Handler:  "sqlite",
		// WAL without an fsync per commit, checkpointed every 20,000 pages, like the
		// upstream launch in scripts/services (FERRET_SQLITE_QUERY).
		SQLiteURL: "file:" + abs + "/?_pragma=synchronous(normal)&_pragma=wal_autocheckpoint(20000)",
	})
	if err != nil {
		fail(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	logger.Info("ferretdb-sqlite starting", "listen", *listen, "dir", abs)
	if err = f.Run(ctx); err != nil {
		fail(err)
	}
	logger.Info("ferretdb-sqlite stopped")
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ferretdb-sqlite:", err)
	os.Exit(1)
}
