package workpool

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// checkOnce runs Run(n, threads) and checks that every part was called
// exactly once and that its write is visible when Run returns.
func checkOnce(t *testing.T, n, threads int) {
	t.Helper()
	calls := make([]atomic.Int32, n)
	out := make([]int, n)
	Run(n, threads, func(i int) {
		calls[i].Add(1)
		out[i] = i * i
	})
	for i := range calls {
		if c := calls[i].Load(); c != 1 || out[i] != i*i {
			t.Fatalf("Run(%d, %d): part %d called %d times, wrote %d", n, threads, i, c, out[i])
		}
	}
}

func TestRunCallsEachPartOnce(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	for _, n := range []int{0, 1, 2, 3, 7, 64, 1000} {
		for _, threads := range []int{-1, 0, 1, 2, 3, 8, 64} {
			// Many loops in a row, so that workers joining late meet
			// later loops' generations.
			for range 50 {
				checkOnce(t, n, threads)
			}
		}
	}
	shared.mu.Lock()
	started := len(shared.workers)
	shared.mu.Unlock()
	if started > 3 {
		t.Errorf("%d workers started at GOMAXPROCS 4, want at most 3", started)
	}
}

// TestRunOneThreadInOrder checks that one thread calls the parts in order
// on the caller's goroutine.
func TestRunOneThreadInOrder(t *testing.T) {
	var got []int
	Run(5, 1, func(i int) { got = append(got, i) })
	if fmt.Sprint(got) != "[0 1 2 3 4]" {
		t.Fatalf("Run(5, 1) called %v, want [0 1 2 3 4]", got)
	}
}

// runsTogether reports whether the k parts of one Run(k, k) ran at the
// same time: each waits for all the others to have started, which a pool
// running them one after another would never see.
func runsTogether(k int) bool {
	started := make([]chan struct{}, k)
	for i := range started {
		started[i] = make(chan struct{})
	}
	var failed atomic.Bool
	Run(k, k, func(i int) {
		close(started[i])
		for j := range started {
			select {
			case <-started[j]:
			case <-time.After(10 * time.Second):
				failed.Store(true)
				return
			}
		}
	})
	return !failed.Load()
}

// TestRunConcurrent checks that the parts of a loop run at once, with the
// workers awake and asleep.
func TestRunConcurrent(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	for round := range 20 {
		if round%5 == 4 {
			time.Sleep(2 * SpinFor) // let the workers fall asleep
		}
		if !runsTogether(2) {
			t.Fatalf("round %d: the two parts did not run at the same time", round)
		}
	}
}

// TestRunNestedAndFromManyGoroutines checks loops started inside a part
// and from several goroutines at once: all run every part once.
func TestRunNestedAndFromManyGoroutines(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for range 100 {
				var total atomic.Int64
				Run(3, 3, func(i int) {
					Run(4, 2, func(j int) { total.Add(int64(10*i + j)) })
				})
				// Σ over i < 3, j < 4 of 10i + j = 4·10·3 + 3·6 = 138.
				if got := total.Load(); got != 138 {
					t.Errorf("goroutine %d: nested loops summed %d, want 138", g, got)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestRunAfterSleep checks that workers asleep after SpinFor wake for the
// next loop and that loops keep working with GOMAXPROCS 1 (no workers).
func TestRunAfterSleep(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	for range 5 {
		time.Sleep(3 * SpinFor)
		checkOnce(t, 16, 3)
	}
	runtime.GOMAXPROCS(1)
	checkOnce(t, 16, 3)
}

// TestNarrowLoopsLeaveWorkersAsleep checks that loops with fewer seats
// than an earlier one leave the workers they do not need asleep: once
// workers 1 and 2 sleep, a thousand loops of two threads must not wake
// them (each would then poll for SpinFor, keeping a core busy), and a
// loop of three must.
func TestNarrowLoopsLeaveWorkersAsleep(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	if !runsTogether(4) {
		t.Fatal("the four parts of a loop did not run at the same time")
	}
	shared.mu.Lock()
	w1, w2 := shared.workers[1], shared.workers[2]
	shared.mu.Unlock()
	asleep := func() bool {
		shared.mu.Lock()
		defer shared.mu.Unlock()
		return w1.asleep && w2.asleep
	}
	deadline := time.Now().Add(10 * time.Second)
	for !asleep() {
		if time.Now().After(deadline) {
			t.Fatal("workers 1 and 2 are still awake 10 s after the last loop of four threads")
		}
		checkOnce(t, 2, 2)
		time.Sleep(time.Millisecond)
	}
	wakes := func() int {
		shared.mu.Lock()
		defer shared.mu.Unlock()
		return w1.wakes + w2.wakes
	}
	before := wakes()
	for range 1000 {
		checkOnce(t, 2, 2)
	}
	if n := wakes() - before; n != 0 || !asleep() {
		t.Fatalf("1000 loops of two threads woke workers 1 and 2 %d times (asleep now: %v), want 0", n, asleep())
	}
	if !runsTogether(3) {
		t.Fatal("the three parts of a loop did not run at the same time after the narrow loops")
	}
}

// TestRunNotHeldUpByStalledWorker stalls the worker that joins a loop
// before it claims a part, as the OS may by taking its core: the caller
// must do every part and return without waiting for it.
func TestRunNotHeldUpByStalledWorker(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	release, stalled := make(chan struct{}), make(chan struct{})
	var once sync.Once
	setAfterJoin := func(f func()) { // under mu, where workers read it
		shared.mu.Lock()
		defer shared.mu.Unlock()
		afterJoin = f
	}
	setAfterJoin(func() { once.Do(func() { close(stalled); <-release }) })
	defer setAfterJoin(nil)
	returned := make(chan [64]int32)
	go func() {
		var calls [64]int32
		for !isClosed(stalled) {
			calls = [64]int32{}
			Run(64, 2, func(i int) { calls[i]++ })
		}
		returned <- calls
	}()
	select {
	case calls := <-returned:
		for i, c := range calls {
			if c != 1 {
				t.Errorf("part %d called %d times in the loop the worker stalled in", i, c)
			}
		}
	case <-time.After(10 * time.Second):
		t.Error("Run waited for a worker that joined its loop and stalled before taking a part")
	}
	close(release)
	checkOnce(t, 64, 2) // the worker, released, finds no part of the old loop to take
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// BenchmarkLoop times a loop of two parts (of 4K and 16K floats, about
// 20 and 80 µs) against the same loop as a WaitGroup of goroutines, back
// to back as a model's ops run, and reports the WaitGroup's time over the
// pool's as x_waitgroup, with how long the WaitGroup's goroutine took to
// start (start-lag) beside the caller's own part (part). On the project's
// 2-core virtual machine the goroutine started only about when the
// caller's part was done, whatever its length, so the WaitGroup loop ran
// its parts one after the other and took nearly twice the pool's.
func BenchmarkLoop(b *testing.B) {
	for _, floats := range []int{4 << 10, 16 << 10} {
		b.Run(fmt.Sprintf("part=%dK", floats>>10), func(b *testing.B) { benchmarkLoop(b, floats) })
	}
}

func benchmarkLoop(b *testing.B, floats int) {
	threads := min(2, runtime.GOMAXPROCS(0))
	data := make([][]float32, threads)
	for i := range data {
		data[i] = make([]float32, floats)
	}
	part := func(i int) {
		d := data[i]
		for r := range 16 {
			for j := range d {
				d[j] = d[j]*0.5 + float32(r)
			}
		}
	}
	var lag, own time.Duration
	waitGroup := func() {
		var wg sync.WaitGroup
		start := time.Now()
		for i := 1; i < threads; i++ {
			wg.Go(func() {
				lag += time.Since(start) // one goroutine: no race
				part(i)
			})
		}
		t := time.Now()
		part(0)
		own += time.Since(t)
		wg.Wait()
	}
	var pool, spawned time.Duration
	for range b.N {
		t := time.Now()
		Run(threads, threads, part)
		pool += time.Since(t)
		t = time.Now()
		waitGroup()
		spawned += time.Since(t)
	}
	perLoop := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(b.N) }
	b.ReportMetric(perLoop(pool), "ns/pool-loop")
	b.ReportMetric(perLoop(spawned), "ns/waitgroup-loop")
	b.ReportMetric(float64(spawned)/float64(pool), "x_waitgroup")
	b.ReportMetric(perLoop(own), "ns/part")
	if threads > 1 {
		b.ReportMetric(perLoop(lag), "ns/start-lag")
	}
}

func ExampleRun() {
	squares := make([]int, 8)
	Run(len(squares), runtime.GOMAXPROCS(0), func(i int) {
		squares[i] = i * i // each part writes only its own results
	})
	fmt.Println(squares)
	// Output: [0 1 4 9 16 25 36 49]
}
