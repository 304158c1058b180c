package backend

// ThreadCounter is implemented by a backend that shares each op's work
// among goroutines on the host (the CPU backend): Threads returns how
// many one op may use. It decides how fast ops run and, on a backend
// whose results do not depend on it, is left out of Device; callers that
// describe a run (its first lines, a benchmark's) report it beside Device.
type ThreadCounter interface {
	Threads() int
}
