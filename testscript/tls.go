package testscript

// tlsCommands returns the commands about certificates (to be filled in).
func tlsCommands() map[string]command { return nil }
