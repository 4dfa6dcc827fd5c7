package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// tempDir is this worker's own directory for files being imported from s3:// sources. Several workers
// (on one task queue, on one host) share the base directory; each holds an exclusive flock(2) on its
// lock file for as long as it lives. The kernel drops the lock when the process dies, however it dies
// (SIGKILL, OOM), and a PID could be reused where a lock cannot, so a lock that can be taken is proof
// that its worker is gone and its directory can be removed.
type tempDir struct {
	Path string
	lock *os.File
}

const (
	tempPrefix = "worker-"
	lockSuffix = ".lock"
)

// claimTempDir removes the directories of dead workers under base, then creates and locks this
// worker's own.
func claimTempDir(base string, logger *slog.Logger) (*tempDir, error) {
	if err := os.MkdirAll(base, 0o700); err != nil {
		return nil, fmt.Errorf("import temp directory %s: %w", base, err)
	}
	removeDeadTempDirs(base, logger)
	for attempt := 0; ; attempt++ {
		lock, err := os.CreateTemp(base, tempPrefix+"*"+lockSuffix)
		if err != nil {
			return nil, fmt.Errorf("import temp directory %s: %w", base, err)
		}
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			lock.Close()
			return nil, fmt.Errorf("lock %s: %w", lock.Name(), err)
		}
		// Another worker starting at this moment may have taken the fresh, not yet locked file for a dead
		// worker's and removed it: the lock then guards nothing, so start over with a new name.
		if !stillLinked(lock) {
			lock.Close()
			if attempt < 5 {
				continue
			}
			return nil, fmt.Errorf("import temp directory %s: lock file %s keeps disappearing", base, lock.Name())
		}
		dir := strings.TrimSuffix(lock.Name(), lockSuffix)
		if err := os.Mkdir(dir, 0o700); err != nil {
			os.Remove(lock.Name())
			lock.Close()
			return nil, fmt.Errorf("import temp directory %s: %w", dir, err)
		}
		return &tempDir{Path: dir, lock: lock}, nil
	}
}

// Release removes the directory and its lock (at a clean shutdown).
func (d *tempDir) Release() {
	os.RemoveAll(d.Path)
	os.Remove(d.lock.Name())
	d.lock.Close()
}

func stillLinked(f *os.File) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(f.Name())
	return err == nil && os.SameFile(a, b)
}

// removeDeadTempDirs removes every worker directory under base whose lock no live process holds. A
// directory without a lock file is one whose worker is between creating the lock and the directory,
// or was removed half-way; it is left for the next start.
func removeDeadTempDirs(base string, logger *slog.Logger) {
	entries, err := os.ReadDir(base)
	if err != nil {
		logger.Warn("cannot list the import temp directory", "dir", base, "error", err.Error())
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, tempPrefix) || !strings.HasSuffix(name, lockSuffix) || !e.Type().IsRegular() {
			continue
		}
		lockPath := filepath.Join(base, name)
		f, err := os.OpenFile(lockPath, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close() // held: a live worker
			continue
		}
		dir := strings.TrimSuffix(lockPath, lockSuffix)
		// Holding the dead worker's lock while removing keeps two starting workers from racing on it.
		if err := os.RemoveAll(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			logger.Warn("cannot remove a dead worker's import files", "dir", dir, "error", err.Error())
			f.Close()
			continue
		}
		os.Remove(lockPath)
		f.Close()
		logger.Info("removed a dead worker's import files", "dir", dir)
	}
}
