package testscript

// brokerCommands returns the broker command family (to be filled in).
func brokerCommands() map[string]command { return nil }
