package testscript

// coreCommands returns the commands about processes and files.
func coreCommands() map[string]command { return nil }
