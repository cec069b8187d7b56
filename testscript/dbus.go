package testscript

// dbusCommands returns the dbus command family (to be filled in).
func dbusCommands() map[string]command { return nil }
