package sftp

// BreakConnection closes the backend's SSH connection behind its back, as a network
// failure would.
func BreakConnection(b *Backend) {
	b.mu.Lock()
	c := b.conn
	b.mu.Unlock()
	_ = c.ssh.Close()
}
