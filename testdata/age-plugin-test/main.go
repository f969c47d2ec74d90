// Command age-plugin-cairntest is an age plugin for cairn's tests: it stands in for a
// hardware key (age-plugin-yubikey and the like), so that the plugin code path runs
// without hardware. It is not secure and not meant for real use.
//
// Build it as age-plugin-cairntest and put it on PATH:
//
//	go build -o bin/age-plugin-cairntest ./testdata/age-plugin-test
//	age-plugin-cairntest --generate > plugin-identity.txt
//
// The identity ("AGE-PLUGIN-CAIRNTEST-1…") and recipient ("age1cairntest1…") carry a
// native age X25519 identity and recipient in their data; files get stanzas of type
// "cairntest" holding an X25519 stanza's arguments and body. With CAIRNTEST_FAIL set
// in the environment every unwrap fails, as a removed or broken token would.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"filippo.io/age"
	"filippo.io/age/plugin"
)

const (
	name       = "cairntest"
	stanzaType = "cairntest"
)

func main() {
	p, err := plugin.New(name)
	if err != nil {
		fmt.Fprintf(os.Stderr, "age-plugin-%s: %v\n", name, err)
		os.Exit(1)
	}
	p.RegisterFlags(nil)
	generate := flag.Bool("generate", false, "print a new identity file (with its recipient in a comment)")
	flag.Parse()
	if *generate {
		if err := generateIdentity(); err != nil {
			fmt.Fprintf(os.Stderr, "age-plugin-%s: %v\n", name, err)
			os.Exit(1)
		}
		return
	}
	p.HandleRecipient(func(data []byte) (age.Recipient, error) {
		r, err := age.ParseX25519Recipient(string(data))
		if err != nil {
			return nil, fmt.Errorf("invalid %s recipient", name)
		}
		return &recipient{r: r}, nil
	})
	p.HandleIdentity(func(data []byte) (age.Identity, error) {
		id, err := age.ParseX25519Identity(string(data))
		if err != nil {
			return nil, fmt.Errorf("invalid %s identity", name)
		}
		return &identity{id: id}, nil
	})
	os.Exit(p.Main())
}

func generateIdentity() error {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return err
	}
	pid := plugin.EncodeIdentity(name, []byte(id.String()))
	rec := plugin.EncodeRecipient(name, []byte(id.Recipient().String()))
	if pid == "" || rec == "" {
		return errors.New("encoding failed")
	}
	fmt.Printf("# test identity of age-plugin-%s\n#    Recipient: %s\n%s\n", name, rec, pid)
	return nil
}

type recipient struct{ r *age.X25519Recipient }

func (r *recipient) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	stanzas, err := r.r.Wrap(fileKey)
	if err != nil {
		return nil, err
	}
	for _, s := range stanzas {
		s.Type = stanzaType
	}
	return stanzas, nil
}

type identity struct{ id *age.X25519Identity }

func (i *identity) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	if os.Getenv("CAIRNTEST_FAIL") != "" {
		return nil, errors.New("simulated hardware failure: token not present")
	}
	var native []*age.Stanza
	for _, s := range stanzas {
		if s.Type == stanzaType {
			native = append(native, &age.Stanza{Type: "X25519", Args: s.Args, Body: s.Body})
		}
	}
	if len(native) == 0 {
		return nil, age.ErrIncorrectIdentity
	}
	return i.id.Unwrap(native)
}
