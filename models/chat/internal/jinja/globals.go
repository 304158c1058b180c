package jinja

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// raisedError is the error raise_exception returns: the template's own
// message, reported without a Go or Python prefix.
type raisedError struct{ msg string }

func (e *raisedError) Error() string { return e.msg }

// RaiseException returns transformers' raise_exception global: it stops
// the rendering with the template's message (Error.Raised is set).
func RaiseException() Func {
	return func(args []Value, kwargs []KV) (Value, error) {
		msg := ""
		if len(args) > 0 {
			msg = toStr(args[0])
		}
		return nil, &raisedError{msg}
	}
}

// StrftimeNow returns transformers' strftime_now global: the time now()
// gives, formatted with a Python strftime format.
func StrftimeNow(now func() time.Time) Func {
	return func(args []Value, kwargs []KV) (Value, error) {
		if len(args) != 1 || len(kwargs) > 0 {
			return nil, fmt.Errorf("strftime_now() takes exactly one argument (%d given)", len(args)+len(kwargs))
		}
		f, ok := asString(args[0])
		if !ok {
			return nil, fmt.Errorf("strftime() argument 1 must be str, not %s", typeName(args[0]))
		}
		return Strftime(now(), f)
	}
}

// Strftime formats t as Python's datetime.strftime does on Linux for the
// directives %a %A %b %B %c %d %e %H %I %j %m %M %p %S %u %w %y %Y %z
// %Z %%, and glibc's %-d style (no padding) for the numeric ones.
func Strftime(t time.Time, format string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' || i+1 >= len(format) {
			b.WriteByte(c)
			continue
		}
		i++
		noPad := false
		if format[i] == '-' && i+1 < len(format) {
			noPad = true
			i++
		}
		num := func(v, width int) {
			if noPad {
				fmt.Fprintf(&b, "%d", v)
			} else {
				fmt.Fprintf(&b, "%0*d", width, v)
			}
		}
		switch format[i] {
		case 'a':
			b.WriteString(t.Weekday().String()[:3])
		case 'A':
			b.WriteString(t.Weekday().String())
		case 'b', 'h':
			b.WriteString(t.Month().String()[:3])
		case 'B':
			b.WriteString(t.Month().String())
		case 'c':
			b.WriteString(t.Format("Mon Jan _2 15:04:05 2006"))
		case 'd':
			num(t.Day(), 2)
		case 'e':
			fmt.Fprintf(&b, "%2d", t.Day())
		case 'H':
			num(t.Hour(), 2)
		case 'I':
			h := t.Hour() % 12
			if h == 0 {
				h = 12
			}
			num(h, 2)
		case 'j':
			num(t.YearDay(), 3)
		case 'm':
			num(int(t.Month()), 2)
		case 'M':
			num(t.Minute(), 2)
		case 'p':
			if t.Hour() < 12 {
				b.WriteString("AM")
			} else {
				b.WriteString("PM")
			}
		case 'S':
			num(t.Second(), 2)
		case 'u':
			wd := int(t.Weekday())
			if wd == 0 {
				wd = 7
			}
			fmt.Fprintf(&b, "%d", wd)
		case 'w':
			fmt.Fprintf(&b, "%d", int(t.Weekday()))
		case 'y':
			num(t.Year()%100, 2)
		case 'Y':
			fmt.Fprintf(&b, "%d", t.Year())
		case 'z', 'Z':
			// datetime.now() is naive: Python prints nothing for these.
		case '%':
			b.WriteByte('%')
		default:
			return "", fmt.Errorf("strftime directive %%%c is not supported", format[i])
		}
	}
	return b.String(), nil
}

// raised reports whether err came from raise_exception, and its message.
func raised(err error) (string, bool) {
	var r *raisedError
	if errors.As(err, &r) {
		return r.msg, true
	}
	return "", false
}
