package ctr

import (
	"reflect"
	"strings"
	"unsafe"
)

// WipeObject zeroes what v, a pointer held in an interface, points to, and
// the memory its pointer and slice fields refer to where that memory holds
// no pointers of its own. The standard library and x/crypto export no way
// to clear their key schedules. Most of their types hold the key material
// in arrays inside the object, whatever the machine; crypto/aes's Block on
// s390x does not: it keeps the key in a slice (of an array inside the
// Block), the schedule it expands without the CPACF instructions behind a
// pointer, and a GCM or CTR made from it copies the Block, slice and
// pointer included, so that the copy refers to the first Block's key and
// schedule. A wipe of the object alone left both.
//
// What is not followed: memory that holds pointers, which may be shared
// and is not key material; cgo's types, which may point into C, some of it
// read-only (BoringCrypto's GCM points to a constant); what an interface
// holds. Anything but a non-nil pointer is left alone. WipeObject does not
// allocate: it runs pinned (see internal/nopreempt).
func WipeObject(v any) { wipe(reflect.ValueOf(v), reflect.Value{}) }

// WipeSpent is WipeObject for v, a Block, when user, made from it, may
// still refer to memory v reaches: that memory is left for user's own
// wipe, and so is v's object if user refers into it (see reaches). On
// s390x with CPACF a GCM's key is the array inside the Block it was made
// from, and without CPACF the two share one schedule; elsewhere the GCM
// has a copy and the Block is wiped whole.
func WipeSpent(v, user any) { wipe(reflect.ValueOf(v), reflect.ValueOf(user)) }

// Reach returns the memory WipeObject(v) zeroes: the object, then what it
// refers to. Tests check a wipe with it.
func Reach(v any) [][]byte {
	p := reflect.ValueOf(v)
	if p.Kind() != reflect.Pointer || p.IsNil() {
		return nil
	}
	mem := [][]byte{unsafe.Slice((*byte)(p.UnsafePointer()), p.Type().Elem().Size())}
	refs(p.Elem(), func(at unsafe.Pointer, n uintptr, plain bool, _ reflect.Value) {
		if plain {
			mem = append(mem, unsafe.Slice((*byte)(at), n))
		}
	})
	return mem
}

func wipe(p, user reflect.Value) {
	if p.Kind() != reflect.Pointer || p.IsNil() {
		return
	}
	// What the object refers to first: the references go with it.
	refs(p.Elem(), func(at unsafe.Pointer, n uintptr, plain bool, _ reflect.Value) {
		if plain && !reaches(user, at, n) {
			clear(unsafe.Slice((*byte)(at), n))
		}
	})
	if !reaches(user, p.UnsafePointer(), p.Type().Elem().Size()) {
		// Typed, so that the pointers it clears are cleared for the
		// garbage collector too.
		p.Elem().SetZero()
	}
}

// reaches reports whether the n bytes at at overlap the object user points
// to or anything it refers to, through its pointers, slices and interfaces,
// down to reachDepth objects away (crypto/cipher's GCM of BoringCrypto's
// Block for a key of an odd size holds the Block two away).
func reaches(user reflect.Value, at unsafe.Pointer, n uintptr) bool {
	if !user.IsValid() || user.Kind() != reflect.Pointer || user.IsNil() || n == 0 {
		return false
	}
	return reachesFrom(user.Elem(), user.UnsafePointer(), uintptr(at), uintptr(at)+n, reachDepth)
}

const reachDepth = 4

// reachesFrom reports whether [lo, hi) overlaps obj, at p, or what it
// refers to, depth objects deep.
func reachesFrom(obj reflect.Value, p unsafe.Pointer, lo, hi uintptr, depth int) bool {
	if uintptr(p) < hi && lo < uintptr(p)+obj.Type().Size() {
		return true
	}
	found := false
	refs(obj, func(at unsafe.Pointer, n uintptr, _ bool, target reflect.Value) {
		switch {
		case found:
		case uintptr(at) < hi && lo < uintptr(at)+n:
			found = true
		case target.IsValid() && depth > 1:
			found = reachesFrom(target, at, lo, hi, depth-1)
		}
	})
	return found
}

// refs calls f with the memory each pointer, slice and interface in v
// refers to, through v's structs and arrays: where it is, its size,
// whether f may zero it (memory of a plain type, reached through a pointer
// or a slice), and, for a pointer or an interface, the object.
func refs(v reflect.Value, f func(at unsafe.Pointer, n uintptr, plain bool, target reflect.Value)) {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			refs(v.Field(i), f)
		}
	case reflect.Array:
		if v.Len() == 0 || Scalar(v.Type().Elem().Kind()) {
			return
		}
		for i := range v.Len() {
			refs(v.Index(i), f)
		}
	case reflect.Pointer:
		if !v.IsNil() {
			e := v.Elem()
			f(v.UnsafePointer(), e.Type().Size(), plainValue(e), e)
		}
	case reflect.Slice:
		if v.Cap() == 0 {
			return
		}
		et := v.Type().Elem()
		plain := Scalar(et.Kind()) && !cgoType(et)
		if !plain && v.Len() > 0 {
			plain = plainValue(v.Index(0))
		}
		f(v.UnsafePointer(), uintptr(v.Cap())*et.Size(), plain, reflect.Value{})
	case reflect.Interface:
		if e := v.Elem(); e.Kind() == reflect.Pointer && !e.IsNil() {
			f(e.UnsafePointer(), e.Type().Elem().Size(), false, e.Elem())
		}
	}
}

// plainValue reports whether v's type holds no pointers and is none of
// cgo's. It walks a value rather than the type: reflect's Type.Field
// allocates.
func plainValue(v reflect.Value) bool {
	if cgoType(v.Type()) {
		return false
	}
	switch k := v.Kind(); {
	case Scalar(k):
		return true
	case k == reflect.Array:
		return v.Len() == 0 || plainValue(v.Index(0))
	case k == reflect.Struct:
		for i := range v.NumField() {
			if !plainValue(v.Field(i)) {
				return false
			}
		}
		return true
	}
	return false
}

// cgoType reports whether t is one of the types cgo makes for C's.
func cgoType(t reflect.Type) bool { return strings.HasPrefix(t.Name(), "_Ctype_") }

// Scalar reports whether a value of kind k is plain data by its kind
// alone: a number or a bool, which holds no pointer for the garbage
// collector to trace. The root package asks the same of the types laid
// over entries.
func Scalar(k reflect.Kind) bool {
	switch k {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	}
	return false
}
