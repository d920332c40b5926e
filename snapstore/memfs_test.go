package snapstore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"sync"
)

// memFS is an in-memory fileSystem that can crash after any number of
// operations and then show what the crash left: per file it keeps the
// bytes written and the bytes last synced, and per directory the names as
// of the last SyncDir and the name changes since. image(false) is what a
// killed process leaves (every completed operation); powerCutImages are
// what a power cut may leave: only synced data, under the names of the
// last SyncDir plus any subset of the creations, renames and removals
// since (a file system may persist them in any order).
type memFS struct {
	mu      sync.Mutex
	files   map[string]*memFile
	durable map[string]*memFile
	pending []dirOp // name changes since the last SyncDir, in order
	locked  map[string]bool
	// opsLeft is how many more mutating operations may run before the
	// crash; negative is unlimited. After it, every mutating operation
	// fails with errCrashed.
	opsLeft int
	dead    bool
	ops     int // mutating operations run so far
}

type memFile struct {
	data   []byte
	synced []byte
}

// dirOp is a name change: a creation (from empty), removal (to empty) or
// rename of f.
type dirOp struct {
	from, to string
	f        *memFile
}

var errCrashed = errors.New("memfs: crashed")

func newMemFS() *memFS {
	return &memFS{files: map[string]*memFile{}, durable: map[string]*memFile{}, locked: map[string]bool{}, opsLeft: -1}
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
		c := &memFile{data: slices.Clone(content), synced: slices.Clone(content)}
		out.files[name], out.durable[name] = c, c
	}
	return out
}

// powerCutImages returns every state a power cut now may leave.
func (m *memFS) powerCutImages() []*memFS {
	m.mu.Lock()
	n := len(m.pending)
	m.mu.Unlock()
	if n > 10 {
		panic("memfs: too many unsynced name changes to enumerate")
	}
	var out []*memFS
	for mask := range 1 << n {
		out = append(out, m.powerCutImage(mask))
	}
	return out
}

// powerCutImage is the state where, of the name changes since the last
// SyncDir, those whose bit is set in mask persisted. A rename persists
// only if its file's name did.
func (m *memFS) powerCutImage(mask int) *memFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := maps.Clone(m.durable)
	for i, op := range m.pending {
		if mask&(1<<i) == 0 {
			continue
		}
		switch {
		case op.from == "":
			names[op.to] = op.f
		case names[op.from] != op.f:
			// The file's own creation or rename did not persist.
		case op.to == "":
			delete(names, op.from)
		default:
			delete(names, op.from)
			names[op.to] = op.f
		}
	}
	out := newMemFS()
	for name, f := range names {
		c := &memFile{data: slices.Clone(f.synced), synced: slices.Clone(f.synced)}
		out.files[name], out.durable[name] = c, c
	}
	return out
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

// names lists the files, sorted.
func (m *memFS) names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for name := range m.files {
		out = append(out, filepath.Base(name))
	}
	sort.Strings(out)
	return out
}

// step accounts for one mutating operation; callers hold mu.
func (m *memFS) step() error {
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

func notExist(name string) error { return fmt.Errorf("memfs: %s: %w", name, fs.ErrNotExist) }

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

func (m *memFS) Create(name string) (writeFile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.step(); err != nil {
		return nil, err
	}
	if _, ok := m.files[name]; ok {
		return nil, fmt.Errorf("memfs: %s: %w", name, fs.ErrExist)
	}
	f := &memFile{}
	m.files[name] = f
	m.pending = append(m.pending, dirOp{to: name, f: f})
	return &memWriter{fs: m, f: f}, nil
}

func (m *memFS) Open(name string) (readFile, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[name]
	if !ok {
		return nil, notExist(name)
	}
	return &memReader{fs: m, f: f}, nil
}

func (m *memFS) Rename(from, to string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.step(); err != nil {
		return err
	}
	f, ok := m.files[from]
	if !ok {
		return notExist(from)
	}
	m.files[to] = f
	delete(m.files, from)
	m.pending = append(m.pending, dirOp{from: from, to: to, f: f})
	return nil
}

func (m *memFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.step(); err != nil {
		return err
	}
	f, ok := m.files[name]
	if !ok {
		return notExist(name)
	}
	delete(m.files, name)
	m.pending = append(m.pending, dirOp{from: name, f: f})
	return nil
}

func (m *memFS) SyncDir(string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.step(); err != nil {
		return err
	}
	m.durable = maps.Clone(m.files)
	m.pending = nil
	return nil
}

// memWriter appends to a memFile.
type memWriter struct {
	fs *memFS
	f  *memFile
}

func (w *memWriter) Write(p []byte) (int, error) {
	w.fs.mu.Lock()
	defer w.fs.mu.Unlock()
	if err := w.fs.step(); err != nil {
		return 0, err
	}
	w.f.data = append(w.f.data, p...)
	return len(p), nil
}

func (w *memWriter) Sync() error {
	w.fs.mu.Lock()
	defer w.fs.mu.Unlock()
	if err := w.fs.step(); err != nil {
		return err
	}
	w.f.synced = slices.Clone(w.f.data)
	return nil
}

func (w *memWriter) Close() error { return nil }

// memReader reads a memFile; like an open file it keeps reading after the
// name is removed.
type memReader struct {
	fs *memFS
	f  *memFile
}

func (r *memReader) ReadAt(p []byte, off int64) (int, error) {
	r.fs.mu.Lock()
	defer r.fs.mu.Unlock()
	if off >= int64(len(r.f.data)) {
		return 0, io.EOF
	}
	n := copy(p, r.f.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (r *memReader) Size() (int64, error) {
	r.fs.mu.Lock()
	defer r.fs.mu.Unlock()
	return int64(len(r.f.data)), nil
}

func (r *memReader) Close() error { return nil }
