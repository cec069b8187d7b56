// Package supervisor starts, watches and stops yggd's worker processes
// (Linux only).
//
// # What runs
//
// Every entry of the worker directory whose name ends in "worker" and that
// is a regular file (symbolic links are followed) executable by yggd is a
// worker, provided no other user could change what runs: see trust.go for
// the rule and its threat model. A file refused by that rule, without an
// exec bit, or that is not a regular file (a named pipe, a socket, a
// device, a link to nothing) is logged once at warn level with the fix
// (again only once it was fixed and broken again, or replaced);
// sub-directories are ignored. While the worker directory itself is
// refused nothing runs from it, and a chmod that fixes it lets the workers
// start. A worker directory that does not exist is created (0755) at
// start, and that is logged at warn, since it usually means a wrong
// worker-dir; one that cannot be created, or is removed or moved away
// later, is logged at warn once (again only after it came back and went
// again), its workers stop, and it is looked for every Config.DirPoll:
// once it is back, it is watched again and its workers start.
//
// A worker process that has not registered with the dispatcher
// Config.LateWindow (30 s) after its start is logged at warn, once per
// start. The set of running workers follows the directory, watched
// with inotify: a file that appears, or becomes executable (chmod +x), is
// started once it has settled (no event for Config.Settle, so that a file
// still being written is not started half-done); a file that is removed,
// renamed away, loses its exec bit or becomes refused has its worker
// stopped and not restarted (Config.OnRemoved is told); a file that is
// replaced while its worker runs (renamed over, or written and closed) has
// its worker restarted so that the new program runs.
//
// A worker may have a settings file, <worker file name>.toml in
// Config.SettingsDir, that turns it off, adds to its environment or passes
// yggd's proxy variables on; settings.go describes it. Settings files are
// watched and checked like worker files.
//
// Each worker runs as the absolute path of its file, with no arguments, with
// exactly Config.Env, plus what its settings add, as its environment
// (nothing else is inherited from yggd),
// with stdin from /dev/null and "/" as its working directory (not the worker
// directory: workers must not depend on, or write into, the libexec
// directory, and "/" keeps no mount point busy). It stays in yggd's process
// group. Its stdout and stderr are read line by line and logged with the
// worker's name, pid and stream as attributes: stderr lines at info level
// (that is where programs, including Go's log package, write their
// diagnostics, and we want worker errors visible in yggd's journal by
// default), stdout lines at debug level (upstream logged both at debug);
// blank lines are skipped.
// A line longer than 8 KiB is logged in 8 KiB pieces marked partial, so a
// worker cannot make yggd buffer without bound.
//
// # Restart policy
//
// A worker whose process exits, for whatever reason and with whatever
// status, is started again after a delay taken from Backoff: 1 s after the
// first exit, doubling on every further exit up to 30 s, and back to 1 s
// once a process has stayed up for 60 s. A worker is never abandoned, and
// one that fails at once forever costs one start every 30 s. While it waits
// it is "restarting" (down); Status reports the state, the number of starts,
// the consecutive failures, the last exit status and the time of the next
// start. A failed start (for example a missing interpreter) counts as a
// crash. Each exit is logged with its status or signal and the delay before
// the next start.
//
// # Stopping
//
// A worker is stopped with SIGTERM; if it has not exited after Config.Grace
// (5 s by default) it gets SIGKILL. This is os/exec's own Cmd.Cancel and
// Cmd.WaitDelay machinery, so every child is reaped through Cmd.Wait and its
// pipes are closed by it. When Run's context is cancelled every worker is
// stopped this way and Run returns only after all of them have been reaped.
// Should yggd itself die without that chance (SIGKILL, crash), each worker
// receives SIGTERM from the kernel (Linux's parent-death signal; see
// runStarter for why all workers are forked from one locked OS thread).
//
// # Who is a worker
//
// Owner tells the dispatcher whether a pid belongs to a supervised worker:
// the worker's current process or one of its descendants (found by walking
// the parent chain in /proc). Registered and Starting let the core hold a
// message for a worker that is about to register instead of failing it.
//
// # What we do better than upstream yggdrasil 0.1.5
//
//   - Restarts use capped exponential backoff that decays after a healthy
//     run, and a worker is never given up; upstream added 5 s per quick
//     crash, abandoned a worker after 7 starts and never relaxed the penalty.
//   - No pid files: upstream's orphan clean-up SIGKILLed whatever process
//     had later taken a stale pid. Here the kernel's parent-death signal
//     ends workers when yggd dies, so there are no orphans to hunt.
//   - No descriptor leak: children are reaped through Cmd.Wait, which closes
//     the pipes; upstream waited by pid and leaked two descriptors per
//     restart.
//   - Deleting a file that runs nothing is harmless; upstream panicked.
//   - SIGTERM with a grace period, then SIGKILL; upstream sent SIGKILL at
//     once, on shutdown and on delete.
//   - Only regular executable files are started, in a fixed environment,
//     and files that are still being written are not started half-done.
//   - A file that another user could write or swap is not run as root;
//     upstream checked neither owner nor mode.
//   - Owner lets the dispatcher admit only processes that yggd started.
package supervisor
