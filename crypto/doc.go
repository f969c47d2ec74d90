// Package crypto owns cairn's secrets: the repository's key material (a data identity,
// an index identity and a key for blob IDs), the key files that wrap that material for
// one credential each (a passphrase, an age identity), and the keyed MAC that names
// blobs. Everything is age: a key file is an age file encrypted to one credential, and
// the secrets themselves are age identities, so `age -d` with an exported identity
// opens every repository file (docs/FORMAT.md §Keys).
//
// The package knows nothing about backends or the repository layout.
package crypto
