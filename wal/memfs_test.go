package wal

import (
	"errors"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"sync"
)

// memFS is a fault-injecting in-memory fileSystem. It keeps, per file, the
// bytes written and the bytes last synced, and, per directory, the names
// as of the last SyncDir, so a test can build the image a power cut would
// leave:
//
//   - current: everything written so far survived (with budget, a write
//     cut at an exact byte offset, after which the "process" is dead);
//   - durable: only synced data and synced directory entries survived.
//
// Bit flips are applied to an image by the tests directly.
type memFS struct {
	mu      sync.Mutex
	files   map[string]*memFile
	durable map[string]*memFile // names as of the last SyncDir
	locked  map[string]bool
	// budget is how many more bytes may be written; negative is unlimited.
	// The write that exhausts it is cut there and the fs is then dead:
	// every later operation fails, as after a crash.
	budget int64
	dead   bool
	// failSync makes Sync and SyncDir fail without syncing.
	failSync bool
	written  int64 // bytes written in total
	// opsLeft is how many more mutating operations (writes, syncs,
	// creations, renames, removals, truncations, preallocations) may run
	// before the crash; negative is unlimited. ops counts those run.
	opsLeft int
	ops     int
	// removeGate, when set, holds every Remove until it is closed;
	// failRemove makes Remove fail.
	removeGate chan struct{}
	failRemove bool
}

type memFile struct {
	data   []byte
	synced []byte
}

var (
	errCrashed     = errors.New("memfs: crashed")
	errSyncFault   = errors.New("memfs: injected sync failure")
	errRemoveFault = errors.New("memfs: injected remove failure")
)

func newMemFS() *memFS {
	return &memFS{files: map[string]*memFile{}, durable: map[string]*memFile{}, locked: map[string]bool{}, budget: -1, opsLeft: -1}
}

// image returns a fresh fs holding what a crash now would leave.
func (m *memFS) image(durable bool) *memFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := newMemFS()
	names := m.files
	if durable {
		names = m.durable
	}
	for name, f := range names {
		content := f.data
		if durable {
			content = f.synced
		}
		c := slices.Clone(content)
		out.files[name] = &memFile{data: c, synced: slices.Clone(c)}
		out.durable[name] = out.files[name]
	}
	return out
}

// segmentFiles lists the segment files, sorted.
func (m *memFS) segmentFiles() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for name := range m.files {
		if _, _, ok := parseSegmentName(filepath.Base(name)); ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// check accounts for one mutating operation: it fails once the fs has
// crashed. Callers hold mu.
func (m *memFS) check() error {
	if m.dead || m.opsLeft == 0 {
		m.dead = true
		return errCrashed
	}
	if m.opsLeft > 0 {
		m.opsLeft--
	}
	m.ops++
	return nil
}

// crashAfter lets n more mutating operations run.
func (m *memFS) crashAfter(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.opsLeft = n
}

func (m *memFS) opCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ops
}

func (m *memFS) MkdirAll(string) error { return nil }

func (m *memFS) Lock(dir string) (io.Closer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.locked[dir] {
		return nil, ErrLocked
	}
	m.locked[dir] = true
	return closerFunc(func() error {
		m.mu.Lock()
		defer m.mu.Unlock()
		delete(m.locked, dir)
		return nil
	}), nil
}

type closerFunc func() error

func (c closerFunc) Close() error { return c() }

func (m *memFS) ReadDir(dir string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for name := range m.files {
		if filepath.Dir(name) == filepath.Clean(dir) {
			out = append(out, filepath.Base(name))
		}
	}
	sort.Strings(out)
	return out, nil
}

func (m *memFS) Create(name string) (file, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return nil, err
	}
	if _, ok := m.files[name]; ok {
		return nil, errors.New("memfs: exists: " + name)
	}
	f := &memFile{}
	m.files[name] = f
	return &memHandle{fs: m, f: f}, nil
}

func (m *memFS) Open(name string) (file, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[name]
	if !ok {
		return nil, errors.New("memfs: no such file: " + name)
	}
	return &memHandle{fs: m, f: f}, nil
}

func (m *memFS) Rename(from, to string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return err
	}
	f, ok := m.files[from]
	if !ok {
		return errors.New("memfs: no such file: " + from)
	}
	m.files[to] = f
	delete(m.files, from)
	return nil
}

func (m *memFS) Remove(name string) error {
	m.mu.Lock()
	gate := m.removeGate
	m.mu.Unlock()
	if gate != nil {
		<-gate
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return err
	}
	if m.failRemove {
		return errRemoveFault
	}
	delete(m.files, name)
	return nil
}

func (m *memFS) SyncDir(string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.check(); err != nil {
		return err
	}
	if m.failSync {
		return errSyncFault
	}
	m.durable = make(map[string]*memFile, len(m.files))
	for k, v := range m.files {
		m.durable[k] = v
	}
	return nil
}

// memHandle is an open memFile.
type memHandle struct {
	fs *memFS
	f  *memFile
}

func (h *memHandle) ReadAt(p []byte, off int64) (int, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if off >= int64(len(h.f.data)) {
		return 0, io.EOF
	}
	n := copy(p, h.f.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (h *memHandle) WriteAt(p []byte, off int64) (int, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.fs.check(); err != nil {
		return 0, err
	}
	n := int64(len(p))
	var err error
	if h.fs.budget >= 0 && n > h.fs.budget {
		n, err = h.fs.budget, errCrashed
		h.fs.dead = true
	}
	if h.fs.budget >= 0 {
		h.fs.budget -= n
	}
	if end := off + n; end > int64(len(h.f.data)) {
		h.f.data = append(h.f.data, make([]byte, end-int64(len(h.f.data)))...)
	}
	copy(h.f.data[off:], p[:n])
	h.fs.written += n
	return int(n), err
}

func (h *memHandle) Sync() error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.fs.check(); err != nil {
		return err
	}
	if h.fs.failSync {
		return errSyncFault
	}
	h.f.synced = slices.Clone(h.f.data)
	return nil
}

func (h *memHandle) Size() (int64, error) {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	return int64(len(h.f.data)), nil
}

func (h *memHandle) Preallocate(size int64) error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.fs.check(); err != nil {
		return err
	}
	if size > int64(len(h.f.data)) {
		h.f.data = append(h.f.data, make([]byte, size-int64(len(h.f.data)))...)
	}
	return nil
}

func (h *memHandle) Truncate(size int64) error {
	h.fs.mu.Lock()
	defer h.fs.mu.Unlock()
	if err := h.fs.check(); err != nil {
		return err
	}
	if size < int64(len(h.f.data)) {
		h.f.data = slices.Clone(h.f.data[:size])
	} else {
		h.f.data = append(h.f.data, make([]byte, size-int64(len(h.f.data)))...)
	}
	return nil
}

func (h *memHandle) Close() error { return nil }
