#include "iser/store/lba_status.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "iser/store/file_io.h"

namespace iser::store {
namespace {

// Next data byte at or after `from`, or `end` if there is none before `end`.
absl::StatusOr<uint64_t> NextData(int fd, uint64_t from, uint64_t end) {
  off_t r = ::lseek(fd, static_cast<off_t>(from), SEEK_DATA);
  if (r < 0) {
    if (errno == ENXIO) return end;  // only hole (or EOF) from here on
    return ErrnoError(errno, "lseek(SEEK_DATA)");
  }
  return std::min<uint64_t>(r, end);
}

// Next hole byte at or after `from` (end of file counts as a hole).
absl::StatusOr<uint64_t> NextHole(int fd, uint64_t from, uint64_t end) {
  off_t r = ::lseek(fd, static_cast<off_t>(from), SEEK_HOLE);
  if (r < 0) {
    if (errno == ENXIO) return end;  // `from` is past end of file
    return ErrnoError(errno, "lseek(SEEK_HOLE)");
  }
  return std::min<uint64_t>(r, end);
}

uint64_t RoundDown(uint64_t v, uint32_t b) { return v / b * b; }
uint64_t RoundUp(uint64_t v, uint32_t b) { return (v + b - 1) / b * b; }

}  // namespace

absl::StatusOr<LbaRun> ProbeLbaRun(int fd, uint64_t offset, uint64_t end, uint32_t block_size) {
  absl::StatusOr<uint64_t> data = NextData(fd, offset, end);
  if (!data.ok()) return data.status();
  // Deallocated: the whole blocks before the block holding the next data byte.
  uint64_t hole_end = std::min(RoundDown(*data, block_size), end);
  if (hole_end > offset) return LbaRun{offset, hole_end - offset, /*mapped=*/false};

  // Mapped: extend across holes too small to free a whole block.
  uint64_t mapped_end = offset;
  uint64_t from = offset;
  while (mapped_end < end) {
    absl::StatusOr<uint64_t> hole = NextHole(fd, from, end);
    if (!hole.ok()) return hole.status();
    mapped_end = std::min(RoundUp(*hole, block_size), end);
    if (mapped_end >= end) break;
    data = NextData(fd, mapped_end, end);
    if (!data.ok()) return data.status();
    if (RoundDown(*data, block_size) > mapped_end) break;  // a whole free block follows
    from = *data;
  }
  return LbaRun{offset, mapped_end - offset, /*mapped=*/true};
}

}  // namespace iser::store
