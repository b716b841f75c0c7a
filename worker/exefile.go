package worker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
)

// An executable kept open is the version that was opened, whatever later
// happens to its path: a package upgrade writes the new file beside it and
// renames it over the old one, and the open descriptor still names the old
// inode. A child runs it through its own descriptor of it: the file is
// passed at a fixed descriptor (one of exec.Cmd.ExtraFiles, so that no
// descriptor shuffling in the fork can reuse that number) and the child
// execs /proc/self/fd/N, resolved after the fork and before the exec, in
// the child (it works in a new PID or user namespace too: /proc/self is
// the child itself). Only the exec needs the descriptor; the child
// inherits it without close-on-exec and should close it.

// fdPath is the path through which a process runs the executable open on
// its own descriptor fd.
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// OpenExecutable opens path to run it later through the descriptor (see
// FileCommand, Spec.GuardFile): it must be a regular file with an execute
// bit. The descriptor is close-on-exec in this process.
func OpenExecutable(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		f.Close()
		return nil, fmt.Errorf("worker: %s is not an executable file (%s)", path, fi.Mode())
	}
	return f, nil
}

// FileCommand returns a command that runs the executable open as f (for
// instance OrphanInfo.Helper): f becomes the child's descriptor 3 and the
// child execs it through /proc/self/fd/3, so the child runs the file that
// was opened even if its path now names another. name is argv[0]. The
// caller may add ExtraFiles after f.
func FileCommand(ctx context.Context, f *os.File, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, fdPath(3), args...)
	cmd.Args[0] = name
	cmd.ExtraFiles = []*os.File{f}
	return cmd
}
