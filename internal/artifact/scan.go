package artifact

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/modelreg/modelreg/internal/names"
)

// LocalFile is one file found by ScanDir.
type LocalFile struct {
	Path string // clean relative slash-separated path inside the scanned directory
	Abs  string // absolute path to read the bytes from (a symlink's resolved target)
	Size int64
}

// maxScanProblems caps how many problems one ScanDir error lists, so a bad tree stays readable.
const maxScanProblems = 20

// ScanDir lists the regular files below root, sorted by Path, for uploading a training job's output.
// Symlinks are followed only to regular files inside root; a symlink leaving root, a symlinked directory,
// a dangling link, a device, socket or pipe, a name CleanArtifactPath rejects, or two names that differ
// only in case (names.CaseCollisions: a case-insensitive filesystem holds one of them) is an error. It
// reports every problem it finds (up to a limit), not only the first, so one run shows what to fix.
func ScanDir(root string) ([]LocalFile, error) {
	if root == "" {
		return nil, fmt.Errorf("artifact directory path is empty")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("artifact directory %s: %w", root, err)
	}
	st, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("artifact directory %s does not exist", root)
	}
	if err != nil {
		return nil, fmt.Errorf("artifact directory %s: %w", root, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("artifact directory %s is not a directory", root)
	}
	// Containment is judged on resolved paths, so root itself may be a symlink (e.g. /outputs -> /mnt/x).
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("artifact directory %s: %w", root, err)
	}

	var files []LocalFile
	var problems []string
	problem := func(format string, args ...any) {
		problems = append(problems, fmt.Sprintf(format, args...))
	}
	add := func(rel, abs string, size int64) {
		p, err := names.CleanArtifactPath(filepath.ToSlash(rel))
		if err != nil {
			problem("%v", err)
			return
		}
		files = append(files, LocalFile{Path: p, Abs: abs, Size: size})
	}
	walkErr := filepath.WalkDir(real, func(p string, de fs.DirEntry, err error) error {
		rel, _ := filepath.Rel(real, p)
		if err != nil {
			problem("cannot read %q: %v", rel, err)
			if de != nil && de.IsDir() && p != real {
				return fs.SkipDir
			}
			return nil
		}
		if p == real {
			return nil
		}
		switch t := de.Type(); {
		case t.IsDir():
			return nil
		case t.IsRegular():
			info, err := de.Info()
			if err != nil {
				problem("cannot stat %q: %v", rel, err)
				return nil
			}
			add(rel, p, info.Size())
		case t&fs.ModeSymlink != 0:
			target, err := filepath.EvalSymlinks(p)
			if err != nil {
				problem("symlink %q cannot be resolved (dangling or a loop): %v", rel, err)
				return nil
			}
			if !within(real, target) {
				problem("symlink %q points to %s, outside the artifact directory", rel, target)
				return nil
			}
			info, err := os.Stat(target)
			if err != nil {
				problem("symlink %q: %v", rel, err)
				return nil
			}
			if info.IsDir() {
				problem("symlink %q points to a directory; symlinked directories are not followed, copy the files or link them individually", rel)
				return nil
			}
			if !info.Mode().IsRegular() {
				problem("symlink %q points to a %s, not a regular file", rel, describeType(info.Mode()))
				return nil
			}
			add(rel, target, info.Size())
		default:
			problem("%q is a %s, not a regular file", rel, describeType(t))
		}
		return nil
	})
	if walkErr != nil {
		problem("%v", walkErr)
	}
	if len(problems) > 0 {
		return nil, scanProblems(root, problems)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("artifact directory %s contains no regular files", root)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	// A case-sensitive filesystem can hold both Model.bin and model.bin; a deployer's case-insensitive
	// one cannot, and the registry refuses such a version: say so before anything is uploaded.
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.Path
	}
	for _, c := range names.CaseCollisions(paths) {
		problem("%v", c)
	}
	if len(problems) > 0 {
		return nil, scanProblems(root, problems)
	}
	return files, nil
}

func scanProblems(root string, problems []string) error {
	if n := len(problems); n > maxScanProblems {
		problems = append(problems[:maxScanProblems], fmt.Sprintf("… and %d more", n-maxScanProblems))
	}
	return fmt.Errorf("artifact directory %s cannot be uploaded:\n  %s", root, strings.Join(problems, "\n  "))
}

func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

func describeType(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeIrregular != 0:
		return "irregular file"
	default:
		return "special file (" + m.Type().String() + ")"
	}
}
