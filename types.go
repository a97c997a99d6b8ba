package memshuffle

import (
	"fmt"
	"reflect"
	"sync"
	"unsafe"

	"github.com/memshuffle/memshuffle/internal/ctr"
)

type typeInfo struct{ size, align int }

// typeErrs caches, per type, nil or the reason the type is unsupported, so
// the reflection walk runs once per type rather than on every Rent.
var typeErrs sync.Map // reflect.Type -> error

func typeOf[T any]() (typeInfo, error) {
	var z *T // not a T: see Alloc
	ti := typeInfo{size: int(unsafe.Sizeof(*z)), align: int(unsafe.Alignof(*z))}
	// The element types nearly every Rent uses need no lookup: this is on
	// the path of every borrow.
	switch any(z).(type) {
	case *byte, *int8, *uint16, *int16, *uint32, *int32, *uint64, *int64, *uint, *int, *uintptr, *float32, *float64:
		return ti, nil
	}
	t := reflect.TypeFor[T]()
	if v, ok := typeErrs.Load(t); ok {
		if v == nil {
			return ti, nil
		}
		return ti, v.(error)
	}
	var err error
	if ti.size == 0 {
		err = fmt.Errorf("%w: %v has size 0", ErrUnsupportedType, t)
	} else if where := pointerIn(t, t.String()); where != "" {
		err = fmt.Errorf("%w: %v holds a Go pointer at %s", ErrUnsupportedType, t, where)
	} else if where := boolIn(t, t.String()); where != "" {
		err = fmt.Errorf("%w: %v has a bool at %s, and not every byte is one (use uint8)", ErrUnsupportedType, t, where)
	}
	if err == nil {
		typeErrs.Store(t, nil)
	} else {
		typeErrs.Store(t, err)
	}
	return ti, err
}

// pointerIn returns the path to the first part of t the garbage collector
// would have to trace, or "" when t is plain data.
func pointerIn(t reflect.Type, path string) string {
	return partIn(t, path, func(k reflect.Kind) bool { return !ctr.Scalar(k) })
}

// boolIn returns the path to the first bool in t, or "" when it has none.
//
// An entry's bytes come from anywhere: CopyFrom, ReadFrom and Random fill
// byte entries that may be rented as structs, and under AES256CTR a byte
// changed at rest decrypts to a changed byte. Every bit pattern is a valid
// number, but a bool must be 0 or 1: the compiler relies on it, and a bool
// holding 2, which is both true and not true, indexes past an array whose
// bounds check the compiler dropped because a bool-derived index could only
// be 0 or 1. So a type holding a bool cannot be laid over an entry.
func boolIn(t reflect.Type, path string) string {
	return partIn(t, path, func(k reflect.Kind) bool { return k == reflect.Bool })
}

// partIn returns the path to the first part of t, through arrays and
// struct fields, whose kind is one of those wanted, with the kind, or ""
// when t has none.
func partIn(t reflect.Type, path string, wanted func(reflect.Kind) bool) string {
	switch k := t.Kind(); {
	case k == reflect.Array && t.Len() == 0:
		// Holds no element: a [0]func() field, the usual way to make a
		// struct not comparable, is no pointer for the collector.
		return ""
	case k == reflect.Array:
		return partIn(t.Elem(), path+"[]", wanted)
	case k == reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if w := partIn(f.Type, path+"."+f.Name, wanted); w != "" {
				return w
			}
		}
		return ""
	case wanted(k):
		return path + " (" + k.String() + ")"
	}
	return ""
}
