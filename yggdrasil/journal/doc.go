// Package journal is yggd's durable store-and-forward journal. It keeps,
// across crashes and restarts, the data messages received from the broker
// until their worker has taken them, the ids of messages already done (so
// that a broker redelivery is dropped), and the answers waiting for the
// broker's PUBACK. It replaces the in-memory Dedupe and Outbox of package
// yggdrasil.
//
// # Use
//
// Inbound: AddInbound (durable), then acknowledge to the broker; Handing
// (durable), then hand the message to its worker; Done once the worker
// took or refused it; Forget after a refusal so that a resend with the
// same id is a new attempt. After a restart, Recovered lists the pending
// ids (deliver them again, reading them with ReadInbound) and the handing
// ids (outcome unknown: answer them with a negative acknowledgement).
//
// Outbound: AppendOutbound (durable) returns a sequence number; walk the
// pending answers in order with NextOutbound; Acked after the PUBACK.
//
// # Durability
//
// AddInbound, Handing and AppendOutbound return once their record is
// synced (fdatasync). Writes are grouped: callers append records to a
// shared batch, and one turn at a time writes the whole batch with one
// write call and syncs once, then wakes every caller, so one fsync covers
// everything appended meanwhile. The caller whose record finds no turn
// under way takes the turn on its own goroutine; the others wake the
// writer goroutine, which takes the next. With many messages in flight a
// turn waits for a group before its sync (at most Options.GroupWait).
// Done, Forget and Acked do not wait at all: their record goes to the
// file with the turn under way or the next one, within a millisecond or
// so (from then on it survives a crash of yggd), and is synced by the
// next group commit (it may be lost in a power cut); one that takes a turn
// syncs the records of durable callers in it. Losing one is harmless: a
// lost Done leaves the message handing (because Handing was durable), so
// it is nacked rather than run twice; a lost Acked publishes the answer
// again, which QoS 1 allows; a lost Forget leaves the id as it was.
//
// # Files
//
// The journal is a sequence of segment files journal-<n>.log in its
// directory; only the newest is live. A segment is:
//
//	"YGGJNL01"                                    8-byte magic
//	record*                                       appended, never rewritten
//	zero bytes                                    written ahead of the records
//	record = len uint32le | crc uint32le | body   crc: CRC-32C of len and body
//	body   = kind byte | fields (uvarint-prefixed strings, varint times, seqs) | payload
//
// Each segment opens with a snapshot of the live state, between a
// snapshot-begin record (carrying the next outbound seq) and a
// snapshot-end record: pending and handing inbound messages with their
// payloads, the dedupe window's done ids with their times, pending answers
// with their payloads. Past SegmentSize the writer rolls: it writes the
// snapshot to segment n+1, syncs it and the directory, then deletes the
// older segments. On Open the newest segment whose snapshot is complete
// wins; a newer one (an interrupted roll) and older ones are deleted. The
// chosen segment is replayed up to the first torn or corrupt record, and
// cut there with a warning naming the file, offset and bytes dropped.
// Nothing but zeros after the last record is not damage: the writer writes
// zeros ahead of its records (up to 1 MiB at a time), so that a batch
// overwrites blocks the file already has and its fdatasync commits no
// metadata.
//
// Memory: payloads are not kept; entries hold their offset in the segment
// and are read back when asked. What stays in memory is a small entry per
// pending message or answer, the dedupe window's ids, and the payloads of
// the batch being written.
package journal
