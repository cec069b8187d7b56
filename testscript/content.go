package testscript

// contentState is the script's content server (to be filled in).
type contentState struct{}

// contentCommands returns the content command family (to be filled in).
func contentCommands() map[string]command { return nil }
