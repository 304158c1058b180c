// Package workpool runs the parts of a parallel loop on a process-wide set
// of worker goroutines that stay awake for a moment between loops.
//
// Starting a goroutine per part, as a sync.WaitGroup loop does, is cheap in
// itself, but the goroutine runs only once the scheduler finds a thread
// for it, and an idle thread is asleep in the kernel. On the project's
// 2-core virtual machine the goroutine started only about when the
// caller's own part was done, whether that took 20 or 90 µs
// (BenchmarkLoop's start-lag), so the parts ran one after the other and
// two threads ran a 4M-float row op barely faster than one (1.26×).
// Workers here poll for new work for SpinFor after each loop before they
// sleep, so back-to-back loops (the ops of a training step) find them
// awake; parts are claimed one at a time by whoever is free, and a loop
// waits for its parts, not for its workers, so a worker that is late, or
// kept off its core before it takes a part, holds up no one (one slowed in
// the middle of a part does, as in any parallel loop). A loop wakes and
// keeps polling only the workers it has seats for, so that a process that
// once ran wider loops does not keep the other cores busy.
package workpool

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// SpinFor is how long an idle worker polls for the next loop, and the
// caller for the workers to finish, before sleeping. A model runs its ops
// back to back, so a worker that would sleep between two of them would
// only wake when the second is mostly done; the cap keeps an idle process
// from using CPU for longer than this after its last loop.
const SpinFor = 200 * time.Microsecond

// Run calls fn(i) for every i in [0, n) and returns once all calls have
// returned. Up to threads goroutines make the calls at once, GOMAXPROCS at
// most: the caller and workers, each taking the next i when done with
// one, in no fixed order; fn must give the same results whichever
// goroutine calls it with an i. Where that leaves one goroutine, the calls
// are made in order on the caller's.
//
// Run may be called from many goroutines, and from inside fn: while one
// Run uses the workers, another starts goroutines of its own for its
// parts instead, as a WaitGroup loop would.
//
// If fn panics on the caller's goroutine, Run hands out no more parts,
// waits for the calls under way on other goroutines, and lets the panic
// go on, so that no call of fn outlives Run and a caller that recovers
// finds the workers free for its next loop. A panic on another goroutine
// ends the program, as it would in a goroutine of the caller's own.
func Run(n, threads int, fn func(i int)) {
	threads = min(threads, n, runtime.GOMAXPROCS(0))
	if threads <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	// The pool's claim word numbers parts in 32 bits (see pool): a loop
	// with more, which no caller comes near, would lose the parts past
	// 2³², so it runs on goroutines of its own.
	if uint64(n) > math.MaxUint32 || !shared.busy.CompareAndSwap(false, true) {
		spawn(n, threads, fn)
		return
	}
	shared.run(n, threads-1, fn)
}

// spawn is Run with goroutines of its own, for a Run while the workers
// are busy: threads−1 goroutines and the caller take the parts.
func spawn(n, threads int, fn func(i int)) {
	var next atomic.Int64
	take := func() {
		for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
			fn(int(i))
		}
	}
	var wg sync.WaitGroup
	defer func() {
		// After a panic in the caller's take, this stops the others
		// taking the parts left (any count from n up hands out none);
		// after a return it changes nothing.
		next.Store(int64(n))
		wg.Wait()
	}()
	for range threads - 1 {
		wg.Go(take)
	}
	take()
}

// shared is the process's pool; its workers start as loops ask for them.
var shared = newPool()

// pool is a set of workers and the one loop they may be running.
//
// A loop is published under mu with a new generation number, whose low
// 32 bits the claim word carries in its high 32 beside the next part in
// the low 32: a worker claims a part by a compare-and-swap that fails once
// the generation has moved on, so a worker that joined an earlier loop
// late can never take a part of a later one with the earlier loop's fn.
// The caller waits for the parts claimed to be done, not for the workers
// that joined: one that joined and was then kept off its core before it
// claimed anything holds up no one, and can claim nothing afterwards. 32
// bits of generation are plenty, as a stale worker's compare-and-swap
// would succeed only if 2³² loops were published between its load of the
// claim word and the swap; but they must be compared as 32 bits, as the
// generation itself passes 2³² in a long run: about four days of a small
// training run's ops (11,000 loops a second, dim 256, 2 threads), an hour
// and a quarter of empty loops (a million a second).
type pool struct {
	busy  atomic.Bool   // a Run is using the workers
	gen   atomic.Uint64 // generation of the latest loop; workers poll it
	claim atomic.Uint64 // uint32(gen)<<32 | next part of the latest loop
	// done counts the parts of the latest loop whose fn has returned;
	// waiting says that its caller sleeps on idle until they are all done.
	done    atomic.Int64
	waiting atomic.Bool
	// polling is how many workers the latest loop had seats for, kept
	// after it ends: workers numbered below it poll for the next loop,
	// the others sleep at once, so that a loop narrower than an earlier
	// one (fewer threads, a lower GOMAXPROCS) keeps only its own
	// workers' cores busy.
	polling atomic.Int32

	mu      sync.Mutex
	idle    sync.Cond // broadcast under mu when a part is done while the caller waits
	fn      func(int) // the latest loop's, guarded by mu
	n       int       // its parts, guarded by mu
	seats   int       // workers numbered below it may join it; 0 once it ends; guarded by mu
	workers []*worker // started as loops ask for them, guarded by mu
}

// worker is one of a pool's goroutines, as the pool sees it.
type worker struct {
	id     int       // its place in pool.workers: a loop of s seats takes workers 0 to s−1
	wake   sync.Cond // signalled under the pool's mu when a loop calls the worker
	asleep bool      // waiting on wake; guarded by the pool's mu
	called bool      // a loop has woken it since it fell asleep; guarded by the pool's mu
	wakes  int       // how many times it has woken, for tests; guarded by the pool's mu
}

func newPool() *pool {
	p := &pool{}
	p.idle.L = &p.mu
	return p
}

// run publishes a loop of n parts (n < 2³²) for up to workers workers,
// takes parts itself until none are left, waits for the parts the workers
// took, and frees the pool (p.busy, which the caller set).
func (p *pool) run(n, workers int, fn func(int)) {
	p.mu.Lock()
	for len(p.workers) < workers {
		w := &worker{id: len(p.workers)}
		w.wake.L = &p.mu
		p.workers = append(p.workers, w)
		go p.work(w)
	}
	g := p.gen.Load() + 1
	p.fn, p.n, p.seats = fn, n, workers
	p.polling.Store(int32(workers))
	p.done.Store(0)
	p.claim.Store(g << 32)
	p.gen.Store(g)
	// Only the loop's own workers are woken: the others stay asleep.
	for _, w := range p.workers[:workers] {
		if w.asleep && !w.called {
			w.called = true
			w.wake.Signal()
		}
	}
	p.mu.Unlock()

	// Deferred, so that a panic in fn leaves the pool as a return does;
	// the part whose fn panicked is then never done.
	var running int
	defer func() { p.finish(g, n, running) }()
	p.take(g, n, fn, &running)
}

// finish ends loop g of n parts: it closes the loop to further claims,
// waits for the parts claimed to be done but for the caller's own part
// still running (1 after a panic in its fn, else 0), lets no worker join
// any more, and frees the pool.
func (p *pool) finish(g uint64, n, running int) {
	// After a take that returned every part is claimed already; after a
	// panic in fn, this stops the workers from taking the parts left.
	claimed := min(int(uint32(p.claim.Swap(g<<32|uint64(n)))), n)
	want := int64(claimed - running)
	done := func() bool { return p.done.Load() == want }
	spun := spin(done)
	p.mu.Lock()
	if !spun {
		p.waiting.Store(true)
		for !done() {
			p.idle.Wait()
		}
		p.waiting.Store(false)
	}
	p.fn, p.seats = nil, 0 // no late joiner; drop fn's references
	p.mu.Unlock()
	p.busy.Store(false)
}

// take calls fn for the parts of loop g it can claim, until none are left,
// counting each in p.done once fn returns. running, if not nil, is 1
// while fn runs.
func (p *pool) take(g uint64, n int, fn func(int), running *int) {
	for {
		c := p.claim.Load()
		if uint32(c>>32) != uint32(g) || int(uint32(c)) >= n {
			return
		}
		if !p.claim.CompareAndSwap(c, c+1) {
			continue
		}
		if running != nil {
			*running = 1
		}
		fn(int(uint32(c)))
		if running != nil {
			*running = 0
		}
		p.done.Add(1)
		// A caller asleep in finish is woken under mu, which it holds
		// from setting waiting until it sleeps: either this sees waiting
		// and wakes it, or the caller, checking after setting it, sees
		// this part done.
		if p.waiting.Load() {
			p.mu.Lock()
			p.idle.Broadcast()
			p.mu.Unlock()
		}
	}
}

// work is worker w's life: wait for a loop newer than the last one seen,
// polling for it while w had a seat in the last loop and asleep
// otherwise, join it if it has a seat for w, take parts, repeat.
func (p *pool) work(w *worker) {
	var seen uint64
	for {
		if w.id >= int(p.polling.Load()) || !spin(func() bool { return p.gen.Load() != seen }) {
			p.mu.Lock()
			// Asleep unless a loop with a seat for w came meanwhile.
			if p.gen.Load() == seen || w.id >= p.seats {
				w.asleep = true
				for !w.called {
					w.wake.Wait()
				}
				w.asleep, w.called = false, false
				w.wakes++
			}
			p.mu.Unlock()
		}
		p.mu.Lock()
		g, fn, n := p.gen.Load(), p.fn, p.n
		seen = g
		join, joined := w.id < p.seats, afterJoin
		p.mu.Unlock()
		if join {
			if joined != nil {
				joined()
			}
			p.take(g, n, fn, nil)
		}
	}
}

// afterJoin, where a test sets it (under the pool's mu), is called by
// each worker that joins a loop before it takes a part: a worker kept off
// its core at that moment.
var afterJoin func()

// spin polls done for up to SpinFor and reports whether it came true. It
// reads the clock every 64 polls and yields the thread every 1024 (a few
// µs), so that a poll keeps a goroutine with real work off its core only
// that long; yielding more often would make many spinning workers contend
// for the scheduler's lock, which every runtime.Gosched takes.
func spin(done func() bool) bool {
	start := time.Now()
	for i := 1; !done(); i++ {
		if i%64 == 0 {
			if time.Since(start) > SpinFor {
				return done()
			}
			if i%1024 == 0 {
				runtime.Gosched()
			}
		}
	}
	return true
}
