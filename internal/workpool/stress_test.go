package workpool

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stressFor lengthens TestRunStress from a few hundred loops per goroutine
// to loops for this long: go test ./internal/workpool -run Stress -race
// -args -stress=30s.
var stressFor = flag.Duration("stress", 0, "run TestRunStress for this long")

// goid returns the calling goroutine's id, read from its stack trace; the
// tests use it to tell the caller's part from the workers'.
func goid() int {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, err := strconv.Atoi(string(b[:bytes.IndexByte(b, ' ')]))
	if err != nil {
		panic(fmt.Sprintf("cannot read the goroutine id from %q", buf[:]))
	}
	return id
}

// holdWorkers takes the pool as a Run would, so that Runs meanwhile take
// the spawn path, and returns the function that gives it back.
func holdWorkers() (release func()) {
	for !shared.busy.CompareAndSwap(false, true) {
		runtime.Gosched()
	}
	return func() { shared.busy.Store(false) }
}

// checkedLoop runs Run(n, threads) with parts that sleep for up to
// sleepMax (0: not at all) and reports what went wrong: a part called
// other than once, a write of a part not visible to the caller when Run
// returned, or a call of this loop's fn after Run returned (a worker that
// joined late running a stale fn).
func checkedLoop(n, threads int, sleepMax time.Duration, nested bool) error {
	calls := make([]atomic.Int32, max(n, 0))
	out := make([]int, max(n, 0)) // plain writes: -race checks that Run orders them before its return
	var returned atomic.Bool
	var late atomic.Int32
	var innerErr atomic.Pointer[error]
	Run(n, threads, func(i int) {
		if returned.Load() {
			late.Add(1)
		}
		calls[i].Add(1)
		if sleepMax > 0 {
			time.Sleep(rand.N(sleepMax))
		}
		if nested && i%3 == 0 {
			if err := checkedLoop(5, 2, 0, false); err != nil {
				innerErr.Store(&err)
			}
		}
		out[i] = i*i + 1
	})
	returned.Store(true)
	for i := range calls {
		if c := calls[i].Load(); c != 1 || out[i] != i*i+1 {
			return fmt.Errorf("Run(%d, %d): part %d called %d times, caller sees %d written", n, threads, i, c, out[i])
		}
	}
	if err := innerErr.Load(); err != nil {
		return fmt.Errorf("a loop nested in Run(%d, %d): %w", n, threads, *err)
	}
	// A stale call would most likely come while the caller checks the
	// parts; look once more after giving the workers a moment.
	runtime.Gosched()
	if l := late.Load(); l != 0 {
		return fmt.Errorf("Run(%d, %d): fn called %d times after Run returned", n, threads, l)
	}
	return nil
}

// TestRunStress runs loops of every size from several goroutines at once,
// some nested, some with parts that sleep past SpinFor (so that the caller
// goes from polling to waiting on idle), some after pauses long enough for
// the workers to fall asleep, while another goroutine changes GOMAXPROCS.
// A lost wake-up of the caller hangs the test; a stale worker or a lost
// part fails checkedLoop.
func TestRunStress(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	rounds, deadline := 300, time.Time{}
	if testing.Short() {
		rounds = 100
	}
	if *stressFor > 0 {
		deadline = time.Now().Add(*stressFor)
	}
	more := func(r int) bool {
		if !deadline.IsZero() {
			return time.Now().Before(deadline)
		}
		return r < rounds
	}
	stop := make(chan struct{})
	var flipper sync.WaitGroup
	flipper.Go(func() {
		for procs := 1; ; procs = procs%4 + 1 {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				runtime.GOMAXPROCS(procs)
			}
		}
	})
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() {
			for r := 0; more(r); r++ {
				n, threads := rand.IntN(40), rand.IntN(7)-1
				var sleepMax time.Duration
				switch rand.IntN(8) {
				case 0:
					sleepMax = 2 * SpinFor
				case 1:
					time.Sleep(rand.N(3 * SpinFor))
				}
				if err := checkedLoop(n, threads, sleepMax, rand.IntN(4) == 0); err != nil {
					t.Errorf("goroutine %d, round %d: %v", g, r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	flipper.Wait()
}

// TestRunWakesSleepers checks, over many rounds, that a worker joins the
// loop whether it was polling, falling asleep or asleep when the loop was
// published: the two parts each wait for the other to have started, so a
// worker that missed the loop leaves the caller's part waiting. The pause
// before each round sweeps across SpinFor, where workers stop polling.
func TestRunWakesSleepers(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	rounds := 60
	if testing.Short() {
		rounds = 20
	}
	for round := range rounds {
		time.Sleep(time.Duration(round%12) * SpinFor / 4)
		var started [2]chan struct{}
		for i := range started {
			started[i] = make(chan struct{})
		}
		var failed atomic.Bool
		Run(2, 2, func(i int) {
			close(started[i])
			select {
			case <-started[1-i]:
			case <-time.After(10 * time.Second):
				failed.Store(true)
			}
		})
		if failed.Load() {
			t.Fatalf("round %d: no worker joined the loop within 10 s", round)
		}
	}
}

// TestRunGenerationWraps runs loops across the point where the generation
// no longer fits the claim word's high 32 bits (after 2³² pooled loops;
// see pool for how long a run takes to get there).
func TestRunGenerationWraps(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	setGen := func(g uint64) {
		release := holdWorkers()
		defer release()
		shared.mu.Lock()
		defer shared.mu.Unlock()
		// Workers that see it find a loop with no seats and wait for
		// the next.
		shared.gen.Store(g)
	}
	// Put the generation back, even after a failure, so that the other
	// tests report their own results.
	defer setGen(shared.gen.Load())
	for _, start := range []uint64{1<<32 - 3, 2<<32 - 3} {
		setGen(start)
		for range 6 {
			if err := checkedLoop(16, 4, 0, false); err != nil {
				t.Fatalf("generation %d: %v", shared.gen.Load(), err)
			}
		}
		if got := shared.gen.Load(); got != start+6 {
			t.Fatalf("generation went from %d to %d in 6 loops, want %d (did the loops use the pool?)", start, got, start+6)
		}
	}
}

// TestRunCallerPanic checks what a panic in a part on the caller's
// goroutine leaves behind, both on the pool and on the spawn path: the
// panic reaches the caller's caller, no call of fn is still running or
// starts after that, and the next loop uses the pool and runs every part.
func TestRunCallerPanic(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	for _, path := range []string{"pool", "spawn"} {
		for round := range 10 {
			release := func() {}
			if path == "spawn" {
				release = holdWorkers()
			}
			caller := goid()
			callerIn := make(chan struct{})
			var running, after atomic.Int32
			var returned atomic.Bool
			fn := func(i int) {
				if returned.Load() {
					after.Add(1)
				}
				if goid() == caller {
					select {
					case <-callerIn:
					default:
						close(callerIn)
					}
					panic("part " + strconv.Itoa(i))
				}
				running.Add(1)
				defer running.Add(-1)
				// Hold the workers' parts until the caller has one, so
				// that the caller surely takes one, then keep them
				// running while its panic unwinds.
				select {
				case <-callerIn:
				case <-time.After(time.Second):
				}
				time.Sleep(time.Millisecond)
			}
			got := func() (r any) {
				defer func() { r = recover() }()
				Run(64, 4, fn)
				return nil
			}()
			returned.Store(true)
			stillRunning := running.Load()
			release()
			if got == nil {
				t.Fatalf("%s, round %d: Run returned without the caller's panic", path, round)
			}
			if stillRunning != 0 {
				t.Fatalf("%s, round %d: %d calls of fn still running when the panic reached the caller", path, round, stillRunning)
			}
			time.Sleep(time.Millisecond)
			if a := after.Load(); a != 0 {
				t.Fatalf("%s, round %d: %d calls of fn after the panic reached the caller", path, round, a)
			}
			if shared.busy.Load() {
				t.Fatalf("%s, round %d: the pool is left busy after the panic", path, round)
			}
			gen := shared.gen.Load()
			if err := checkedLoop(8, 4, 0, false); err != nil {
				t.Fatalf("%s, round %d: the loop after the panic: %v", path, round, err)
			}
			if shared.gen.Load() != gen+1 {
				t.Fatalf("%s, round %d: the loop after the panic did not use the pool", path, round)
			}
		}
	}
}

// TestTakeOnlyItsGeneration checks the claim word directly, on a pool of
// its own with no workers: take claims the parts of its own loop and none
// of another generation's, the case of a worker that joined a loop so late
// that the next one is published while it takes parts. The generations
// include ones past 2³², whose low 32 bits are what the claim word holds.
func TestTakeOnlyItsGeneration(t *testing.T) {
	for _, g := range []uint64{1, 1<<32 - 1, 1 << 32, 1<<32 + 1, 3<<32 + 7} {
		p := newPool()
		p.claim.Store(g<<32 | 3) // loop g, parts 0-2 taken
		var stale []int
		for _, other := range []uint64{g - 1, g + 1} {
			p.take(other, 100, func(i int) { stale = append(stale, i) }, nil)
		}
		var own []int
		p.take(g, 6, func(i int) { own = append(own, i) }, nil)
		if len(stale) != 0 || fmt.Sprint(own) != "[3 4 5]" {
			t.Errorf("generation %#x: take of generations ±1 claimed %v, its own %v; want none and [3 4 5]", g, stale, own)
		}
		if c := p.claim.Load(); c != g<<32|6 {
			t.Errorf("generation %#x: claim word %#x after the loop, want %#x", g, c, g<<32|6)
		}
	}
}
