package testscript

// contentCommands returns the content command family (to be filled in).
func contentCommands() map[string]command { return nil }
