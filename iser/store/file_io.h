// Synchronous file primitives behind SparseFileStore: the inline fallback path (no event
// loop, or io_uring unavailable) and the control-plane calls (open, lock, lseek, resize).
// Every function retries EINTR and short transfers; none of them may run on an event loop
// that has io_uring available.
#ifndef ISER_STORE_FILE_IO_H_
#define ISER_STORE_FILE_IO_H_

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace iser::store {

// errno -> absl::Status with the operation named ("pread /path: No such file").
absl::Status ErrnoError(int err, absl::string_view what);

// Reads exactly dst.size() bytes at `offset`; bytes past end of file read as zeroes.
absl::Status PreadFull(int fd, std::span<uint8_t> dst, uint64_t offset);
// Writes all of `src` at `offset`; `dsync` makes it durable before returning (RWF_DSYNC).
absl::Status PwriteFull(int fd, std::span<const uint8_t> src, uint64_t offset, bool dsync);
absl::Status DataSync(int fd);
// Deallocates [offset, offset+length) keeping the file size; if the file system cannot
// punch holes, writes zeroes instead (reads return zeroes either way).
absl::Status PunchHole(int fd, uint64_t offset, uint64_t length);
// Zeroes [offset, offset+length) keeping the blocks allocated (FALLOC_FL_ZERO_RANGE, else
// writes zeroes).
absl::Status ZeroRange(int fd, uint64_t offset, uint64_t length);
// Writes zeroes from a shared zero buffer, in chunks.
absl::Status WriteZeroBytes(int fd, uint64_t offset, uint64_t length);

// A read-only buffer of zeroes, kZeroChunk bytes long, shared by everyone.
inline constexpr uint32_t kZeroChunk = 1 << 20;
const uint8_t* ZeroChunk();

}  // namespace iser::store

#endif  // ISER_STORE_FILE_IO_H_
