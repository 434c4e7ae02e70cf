package rules

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"strings"
)

var idEncoding = base32.NewEncoding("abcdefghijkmnpqrstuvwxyz23456789").WithPadding(base32.NoPadding)

// newID returns a random id that is easy to read aloud and type (no 0/o, 1/l).
func newID(n int) string {
	b := make([]byte, n)
	rand.Read(b) // crypto/rand never fails on supported platforms
	return idEncoding.EncodeToString(b)
}

// newToken returns a node token "<node>.<secret>" and the hash of the secret that is stored.
// The secret has 192 bits.
func newToken(node string) (token string, hash []byte) {
	b := make([]byte, 24)
	rand.Read(b)
	secret := base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(secret))
	return node + "." + secret, h[:]
}

// splitToken returns the node id and the secret's hash of a token. Every request of a node
// authenticates, so it allocates nothing: the hash is returned by value and a secret of
// ordinary length is hashed from a buffer on the stack.
func splitToken(token string) (node string, hash [sha256.Size]byte, ok bool) {
	i := strings.LastIndexByte(token, '.')
	if i <= 0 || i == len(token)-1 {
		return "", hash, false
	}
	secret := token[i+1:]
	var buf [64]byte // a secret newToken made has 32 characters
	if len(secret) <= len(buf) {
		return token[:i], sha256.Sum256(buf[:copy(buf[:], secret)]), true
	}
	return token[:i], sha256.Sum256([]byte(secret)), true
}

func tokenMatches(stored []byte, presented [sha256.Size]byte) bool {
	return len(stored) == len(presented) && subtle.ConstantTimeCompare(stored, presented[:]) == 1
}
