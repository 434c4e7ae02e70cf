package qr

// Reed-Solomon over GF(2^8) with the QR field polynomial x^8+x^4+x^3+x^2+1 (0x11D).

// gfMul multiplies in GF(256) by shift-and-add ("Russian peasant"), reducing by 0x11D;
// codes are tiny, so no tables are needed.
func gfMul(a, b byte) byte {
	var p byte
	for b != 0 {
		if b&1 == 1 {
			p ^= a
		}
		carry := a&0x80 != 0
		a <<= 1
		if carry {
			a ^= 0x1D
		}
		b >>= 1
	}
	return p
}

// generator returns the monic generator polynomial (x-α^0)(x-α^1)…(x-α^(degree-1)),
// coefficients highest power first, the leading 1 omitted.
func generator(degree int) []byte {
	g := make([]byte, degree)
	g[degree-1] = 1 // start from the polynomial 1
	root := byte(1)
	for range degree {
		// multiply g by (x - root); in GF(2^8) minus is plus
		for j := range g {
			g[j] = gfMul(g[j], root)
			if j+1 < len(g) {
				g[j] ^= g[j+1]
			}
		}
		root = gfMul(root, 2)
	}
	return g
}

// remainder divides data·x^len(gen) by the generator; the result is the block's EC codewords.
func remainder(data, gen []byte) []byte {
	rem := make([]byte, len(gen))
	for _, d := range data {
		factor := d ^ rem[0]
		copy(rem, rem[1:])
		rem[len(rem)-1] = 0
		for i, c := range gen {
			rem[i] ^= gfMul(c, factor)
		}
	}
	return rem
}
