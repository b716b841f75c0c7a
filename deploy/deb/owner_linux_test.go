package deb

import (
	"os"
	"syscall"
)

type statT struct{ uid, gid uint32 }

func owner(fi os.FileInfo) statT {
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st == nil {
		return statT{}
	}
	return statT{st.Uid, st.Gid}
}
