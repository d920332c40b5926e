package main

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// checkTree fails unless t holds exactly want, in order, as a balanced
// search tree.
func checkTree(t *testing.T, root *cowNode[int], size int, want map[string]int) {
	t.Helper()
	if size != len(want) {
		t.Fatalf("size %d, want %d", size, len(want))
	}
	var got []string
	for k, v := range ascend(root, "") {
		if want[k] != v {
			t.Fatalf("key %q = %d, want %d", k, v, want[k])
		}
		got = append(got, k)
	}
	if keys := slices.Sorted(maps.Keys(want)); !slices.Equal(got, keys) {
		t.Fatalf("keys in order %v, want %v", got, keys)
	}
	var walk func(n *cowNode[int]) int8
	walk = func(n *cowNode[int]) int8 {
		if n == nil {
			return 0
		}
		l, r := walk(n.left), walk(n.right)
		if h := 1 + max(l, r); n.height != h || l-r > 1 || r-l > 1 {
			t.Fatalf("node %q: height %d (children %d, %d): not an AVL tree", n.key, n.height, l, r)
		}
		return n.height
	}
	walk(root)
}

func TestCOWTreeMatchesAMapAndFrozenViewsNeverChange(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 0))
			var tree cowTree[int]
			model := map[string]int{}
			type frozen struct {
				view frozenTree[int]
				want map[string]int
			}
			var views []frozen
			for i := range 5000 {
				key := fmt.Sprintf("k%03d", rng.IntN(300))
				switch r := rng.IntN(10); {
				case r < 6:
					tree.Set(key, i)
					model[key] = i
				case r < 9:
					_, had := model[key]
					if got := tree.Delete(key); got != had {
						t.Fatalf("Delete(%q) = %v, want %v", key, got, had)
					}
					delete(model, key)
				default:
					views = append(views, frozen{tree.freeze(), maps.Clone(model)})
				}
				want, has := model[key]
				if v, ok := tree.Get(key); v != want || ok != has {
					t.Fatalf("Get(%q) = %d, %v; want %d, %v", key, v, ok, want, has)
				}
			}
			checkTree(t, tree.root, tree.Len(), model)
			for _, f := range views {
				checkTree(t, f.view.root, f.view.Len(), f.want)
			}
		})
	}
}

func TestCOWTreeAscendStartsAtOrAfterFrom(t *testing.T) {
	var tree cowTree[int]
	for i, k := range []string{"a", "b/1", "b/2", "c"} {
		tree.Set(k, i)
	}
	cases := []struct {
		from string
		want []string
	}{
		{"", []string{"a", "b/1", "b/2", "c"}},
		{"b/", []string{"b/1", "b/2", "c"}},
		{"b/2", []string{"b/2", "c"}},
		{"b/20", []string{"c"}},
		{"d", nil},
	}
	for _, c := range cases {
		var got []string
		for k := range tree.Ascend(c.from) {
			got = append(got, k)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("Ascend(%q) = %v, want %v", c.from, got, c.want)
		}
	}
	if k, _, _ := tree.Min(); k != "a" {
		t.Errorf("Min = %q, want a", k)
	}
}

func TestFrozenViewIsReadableWhileTheTreeChanges(t *testing.T) {
	// The race detector is the judge: writes after a freeze must never
	// touch a node the view can reach.
	var tree cowTree[int]
	for i := range 2000 {
		tree.Set(fmt.Sprintf("%05d", i), i)
	}
	view := tree.freeze()
	var wg sync.WaitGroup
	wg.Add(1)
	sum := 0
	go func() {
		defer wg.Done()
		for range 5 {
			for _, v := range view.Ascend("") {
				sum += v
			}
		}
	}()
	for i := range 2000 {
		if i%2 == 0 {
			tree.Delete(fmt.Sprintf("%05d", i))
		} else {
			tree.Set(fmt.Sprintf("%05d", i), -i)
		}
	}
	wg.Wait()
	if want := 5 * 1999 * 2000 / 2; sum != want {
		t.Fatalf("the view summed to %d, want %d (it saw later writes)", sum, want)
	}
}
