package store

// Counts are a shard's gauges of what it holds, kept as entries come and
// go so that statistics cost nothing to read.
type Counts struct {
	live, rented, viewed int   // entries; of them, rented exclusively and viewed
	liveBytes, bigBytes  int64 // their data; of it, in oversize entries
}

// Live is the number of entries, borrowed ones included.
func (c *Counts) Live() int { return c.live }

// Rented is the number of entries rented exclusively.
func (c *Counts) Rented() int { return c.rented }

// Viewed is the number of entries with a view open.
func (c *Counts) Viewed() int { return c.viewed }

// LiveBytes is the data the entries hold, tags not included.
func (c *Counts) LiveBytes() int64 { return c.liveBytes }

// BigBytes is the part of LiveBytes in oversize entries, which have arenas
// of their own.
func (c *Counts) BigBytes() int64 { return c.bigBytes }

// AddRented counts d entries more (or, negative, fewer) as rented.
func (c *Counts) AddRented(d int) { c.rented += d }

// AddViewed counts d entries more (or, negative, fewer) as viewed.
func (c *Counts) AddViewed(d int) { c.viewed += d }

// Reset zeroes every count.
func (c *Counts) Reset() { *c = Counts{} }

// entry counts an entry of size bytes in (sign 1) or out (sign -1).
func (c *Counts) entry(size int64, big bool, sign int) {
	c.live += sign
	c.liveBytes += int64(sign) * size
	if big {
		c.bigBytes += int64(sign) * size
	}
}
