package gguf

import (
	"fmt"
	"math"
	"strings"
)

// ValueType is the type of a metadata value (GGUF's
// gguf_metadata_value_type).
type ValueType uint32

// The metadata value types.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}

// String returns the type's name as the GGUF specification spells it
// ("uint32", "string", ...).
func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("value type %d", uint32(t))
}

// size returns the encoded size of one value of a fixed-size type, 0 for
// strings, arrays and unknown types.
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// Value is a typed metadata value: a number, a bool, a string, or an array
// of one of those, made with the constructors (Uint32, String, Strings,
// ...); the zero Value is the uint8 0. Values are immutable.
type Value struct {
	typ  ValueType
	elem ValueType // element type of an array
	// The value: num holds every number and bool (an integer's bits, a
	// float's math.Float64bits; floats are widened to float64 exactly),
	// str a string; an array holds nums or strs.
	num  uint64
	str  string
	nums []uint64
	strs []string
}

// Uint8 returns a uint8 value.
func Uint8(v uint8) Value { return Value{typ: TypeUint8, num: uint64(v)} }

// Int8 returns an int8 value.
func Int8(v int8) Value { return Value{typ: TypeInt8, num: uint64(int64(v))} }

// Uint16 returns a uint16 value.
func Uint16(v uint16) Value { return Value{typ: TypeUint16, num: uint64(v)} }

// Int16 returns an int16 value.
func Int16(v int16) Value { return Value{typ: TypeInt16, num: uint64(int64(v))} }

// Uint32 returns a uint32 value.
func Uint32(v uint32) Value { return Value{typ: TypeUint32, num: uint64(v)} }

// Int32 returns an int32 value.
func Int32(v int32) Value { return Value{typ: TypeInt32, num: uint64(int64(v))} }

// Uint64 returns a uint64 value.
func Uint64(v uint64) Value { return Value{typ: TypeUint64, num: v} }

// Int64 returns an int64 value.
func Int64(v int64) Value { return Value{typ: TypeInt64, num: uint64(v)} }

// Float32 returns a float32 value.
func Float32(v float32) Value { return Value{typ: TypeFloat32, num: math.Float64bits(float64(v))} }

// Float64 returns a float64 value.
func Float64(v float64) Value { return Value{typ: TypeFloat64, num: math.Float64bits(v)} }

// Bool returns a bool value.
func Bool(v bool) Value {
	var n uint64
	if v {
		n = 1
	}
	return Value{typ: TypeBool, num: n}
}

// String returns a string value. GGUF strings are UTF-8 by convention;
// the bytes are written as they are.
func String(v string) Value { return Value{typ: TypeString, str: v} }

// Strings returns an array of strings. The slice is copied.
func Strings(v []string) Value {
	return Value{typ: TypeArray, elem: TypeString, strs: append([]string{}, v...)}
}

// Float32s returns an array of float32.
func Float32s(v []float32) Value {
	nums := make([]uint64, len(v))
	for i, f := range v {
		nums[i] = math.Float64bits(float64(f))
	}
	return Value{typ: TypeArray, elem: TypeFloat32, nums: nums}
}

// Int32s returns an array of int32.
func Int32s(v []int32) Value {
	nums := make([]uint64, len(v))
	for i, n := range v {
		nums[i] = uint64(int64(n))
	}
	return Value{typ: TypeArray, elem: TypeInt32, nums: nums}
}

// Uint32s returns an array of uint32.
func Uint32s(v []uint32) Value {
	nums := make([]uint64, len(v))
	for i, n := range v {
		nums[i] = uint64(n)
	}
	return Value{typ: TypeArray, elem: TypeUint32, nums: nums}
}

// Type returns the value's type (TypeArray for an array).
func (v Value) Type() ValueType { return v.typ }

// ElemType returns the type of an array's elements (and v's own type for a
// value that is not an array).
func (v Value) ElemType() ValueType {
	if v.typ == TypeArray {
		return v.elem
	}
	return v.typ
}

// Len returns the number of elements of an array, 0 for other values.
func (v Value) Len() int { return len(v.nums) + len(v.strs) }

func isInt(t ValueType) bool {
	switch t {
	case TypeUint8, TypeInt8, TypeUint16, TypeInt16, TypeUint32, TypeInt32, TypeUint64, TypeInt64:
		return true
	}
	return false
}

func isSigned(t ValueType) bool {
	return t == TypeInt8 || t == TypeInt16 || t == TypeInt32 || t == TypeInt64
}

// Int returns an integer value of any integer type as an int64, and false
// for other values (and for a uint64 above the int64 range).
func (v Value) Int() (int64, bool) { return numInt(v.typ, v.num) }

func numInt(t ValueType, n uint64) (int64, bool) {
	if !isInt(t) || (!isSigned(t) && n > math.MaxInt64) {
		return 0, false
	}
	return int64(n), true
}

// Float returns a float32 or float64 value as a float64, and false for
// other values.
func (v Value) Float() (float64, bool) {
	if v.typ != TypeFloat32 && v.typ != TypeFloat64 {
		return 0, false
	}
	return math.Float64frombits(v.num), true
}

// Bool returns a bool value, and false, false for other values.
func (v Value) Bool() (val, ok bool) {
	if v.typ != TypeBool {
		return false, false
	}
	return v.num != 0, true
}

// Str returns a string value, and false for other values.
func (v Value) Str() (string, bool) { return v.str, v.typ == TypeString }

// Strs returns a copy of an array of strings, and false for other values.
func (v Value) Strs() ([]string, bool) {
	if v.typ != TypeArray || v.elem != TypeString {
		return nil, false
	}
	return append([]string{}, v.strs...), true
}

// Floats returns an array of float32 or float64 as float64s, and false for
// other values.
func (v Value) Floats() ([]float64, bool) {
	if v.typ != TypeArray || (v.elem != TypeFloat32 && v.elem != TypeFloat64) {
		return nil, false
	}
	out := make([]float64, len(v.nums))
	for i, n := range v.nums {
		out[i] = math.Float64frombits(n)
	}
	return out, true
}

// Ints returns an array of any integer type as int64s, and false for other
// values (or where a uint64 element is above the int64 range).
func (v Value) Ints() ([]int64, bool) {
	if v.typ != TypeArray || !isInt(v.elem) {
		return nil, false
	}
	out := make([]int64, len(v.nums))
	for i, n := range v.nums {
		var ok bool
		if out[i], ok = numInt(v.elem, n); !ok {
			return nil, false
		}
	}
	return out, true
}

// String formats the value for people: numbers and bools as Go prints
// them, strings quoted, arrays as their type and length with their first
// elements.
func (v Value) String() string {
	one := func(t ValueType, n uint64, s string) string {
		switch {
		case t == TypeString:
			return fmt.Sprintf("%q", s)
		case t == TypeBool:
			return fmt.Sprint(n != 0)
		case t == TypeFloat32 || t == TypeFloat64:
			return fmt.Sprint(math.Float64frombits(n))
		case isSigned(t):
			return fmt.Sprint(int64(n))
		}
		return fmt.Sprint(n)
	}
	if v.typ != TypeArray {
		return one(v.typ, v.num, v.str)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[%d %s:", v.Len(), v.elem)
	for i := 0; i < min(v.Len(), 4); i++ {
		if v.elem == TypeString {
			b.WriteString(" " + one(v.elem, 0, v.strs[i]))
		} else {
			b.WriteString(" " + one(v.elem, v.nums[i], ""))
		}
	}
	if v.Len() > 4 {
		b.WriteString(" ...")
	}
	b.WriteString("]")
	return b.String()
}

// equal reports whether v and w are the same typed value (floats by their
// bits).
func (v Value) equal(w Value) bool {
	if v.typ != w.typ || v.elem != w.elem || v.num != w.num || v.str != w.str || len(v.nums) != len(w.nums) || len(v.strs) != len(w.strs) {
		return false
	}
	for i := range v.nums {
		if v.nums[i] != w.nums[i] {
			return false
		}
	}
	for i := range v.strs {
		if v.strs[i] != w.strs[i] {
			return false
		}
	}
	return true
}

// KV is one metadata entry.
type KV struct {
	Key   string
	Value Value
}

// checkKey returns an error unless key can be written: non-empty ASCII of at
// most 65535 bytes (the specification's rule, which llama.cpp's reader
// does not enforce but its writers keep).
func checkKey(key string) error {
	if key == "" || len(key) > math.MaxUint16 {
		return fmt.Errorf("metadata key of %d bytes; expected 1 to %d", len(key), math.MaxUint16)
	}
	for i := 0; i < len(key); i++ {
		if key[i] >= 0x80 || key[i] < 0x20 {
			return fmt.Errorf("metadata key %q holds byte 0x%02x at %d; keys are printable ASCII", key, key[i], i)
		}
	}
	return nil
}
