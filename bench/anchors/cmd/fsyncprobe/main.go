// Command fsyncprobe measures this machine's raw fsync latency: it appends
// 4 KiB to a file in a temp dir (under $TMPDIR, where the benchmarks keep
// their logs) and calls f.Sync() after each append, 500 times, and prints
// p50/p99 (and more) in microseconds as one JSON line. One fsync per commit is the physical floor for a durable Raft
// log. With -parallel P, P goroutines do the same on P files at once (a
// 3-node in-process cluster has 3 logs on the same disk).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

func main() {
	n := flag.Int("n", 500, "append+fsync rounds per file")
	size := flag.Int("size", 4096, "bytes appended before each fsync")
	parallel := flag.Int("parallel", 1, "files synced concurrently, one goroutine each")
	parent := flag.String("dir", os.TempDir(), "parent directory of the temp dir")
	flag.Parse()

	dir, err := os.MkdirTemp(*parent, "fsyncprobe-*")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(dir)

	buf := make([]byte, *size)
	for i := range buf {
		buf[i] = byte(i)
	}
	lats := make([][]float64, *parallel)
	var wg sync.WaitGroup
	start := time.Now()
	for p := 0; p < *parallel; p++ {
		f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("probe-%d.log", p)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fail(err)
		}
		wg.Add(1)
		go func(p int, f *os.File) {
			defer wg.Done()
			defer f.Close()
			lat := make([]float64, 0, *n)
			for i := 0; i < *n; i++ {
				if _, err := f.Write(buf); err != nil {
					fail(err)
				}
				t0 := time.Now()
				if err := f.Sync(); err != nil {
					fail(err)
				}
				lat = append(lat, float64(time.Since(t0).Nanoseconds())/1e3)
			}
			lats[p] = lat
		}(p, f)
	}
	wg.Wait()
	total := time.Since(start)

	var lat []float64
	for _, l := range lats {
		lat = append(lat, l...)
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(lat)))) - 1
		i = max(0, min(i, len(lat)-1))
		return math.Round(lat[i]*10) / 10
	}
	sum := 0.0
	for _, v := range lat {
		sum += v
	}
	out, _ := json.Marshal(struct {
		Probe         string  `json:"probe"`
		Parallel      int     `json:"parallel"`
		Rounds        int     `json:"rounds"`
		BytesPerWrite int     `json:"bytes_per_write"`
		P50           float64 `json:"fsync_p50_us"`
		P90           float64 `json:"fsync_p90_us"`
		P99           float64 `json:"fsync_p99_us"`
		Max           float64 `json:"fsync_max_us"`
		Mean          float64 `json:"fsync_mean_us"`
		SyncsPerSec   float64 `json:"syncs_per_sec"`
	}{"fsync", *parallel, *n, *size, q(0.50), q(0.90), q(0.99), q(1.0),
		math.Round(sum/float64(len(lat))*10) / 10,
		math.Round(float64(len(lat)) / total.Seconds())})
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "fsyncprobe:", err)
	os.Exit(1)
}
