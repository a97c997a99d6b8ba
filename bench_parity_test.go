package memshuffle

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkReadAll reads input of a size it is not told (call=ReadAll, a
// reader with no Len), next to ReadAll with a reader that tells its length
// (call=ReadAllLen) and ReadFrom told the size, over the same bytes: the
// ratios are the price of growing through entries and shrinking into the
// last one.
func BenchmarkReadAll(b *testing.B) {
	for _, size := range []int{32, 1019, 64 << 10, 1 << 20} {
		src := make([]byte, size)
		for _, mode := range []string{"ReadAll", "ReadAllLen", "ReadFrom"} {
			b.Run(fmt.Sprintf("size=%d/call=%s", size, mode), func(b *testing.B) {
				s := newTest(b, WithShards(1))
				r := bytes.NewReader(src)
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					r.Reset(src)
					var h Handle
					var err error
					switch mode {
					case "ReadAll":
						h, err = ReadAll(s, plainReader{r}, 1<<20)
					case "ReadAllLen":
						h, err = ReadAll(s, r, 1<<20)
					default:
						h, err = ReadFrom(s, r, size)
					}
					if err != nil {
						b.Fatal(err)
					}
					s.Free(h)
				}
			})
		}
	}
}
