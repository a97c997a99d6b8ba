package memshuffle

import "testing"

// TestAEADEntriesFillArenas: entries of 32 KiB under AES256GCM, 32,784
// bytes with their tag, share arenas two to one. Each took an arena of 64
// KiB of its own (mapped twice the data), so that under a memory-lock
// limit half as many fit as under AES256CTR.
func TestAEADEntriesFillArenas(t *testing.T) {
	for _, c := range []Cipher{AES256CTR, AES256GCM, ChaCha20Poly1305} {
		t.Run(c.String(), func(t *testing.T) {
			s := newTest(t, WithShards(1), WithCipher(c))
			for range 12 {
				if _, err := Alloc[byte](s, 32<<10); err != nil {
					t.Fatal(err)
				}
			}
			st := s.Stats()
			if r := float64(st.MappedBytes) / float64(st.LiveBytes); r > 1.2 {
				t.Fatalf("12 entries of 32 KiB: %d bytes mapped for %d (%.2fx) in %d arenas", st.MappedBytes, st.LiveBytes, r, st.Arenas)
			}
			mustCheck(t, s)
		})
	}
}
