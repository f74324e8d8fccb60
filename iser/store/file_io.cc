#include "iser/store/file_io.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace iser::store {

absl::Status ErrnoError(int err, absl::string_view what) {
  return absl::ErrnoToStatus(err, absl::StrCat(what, ": ", std::strerror(err)));
}

absl::Status PreadFull(int fd, std::span<uint8_t> dst, uint64_t offset) {
  size_t done = 0;
  while (done < dst.size()) {
    ssize_t n = ::pread(fd, dst.data() + done, dst.size() - done, offset + done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "pread");
    }
    if (n == 0) {  // past end of file: a sparse file reads as zeroes
      std::memset(dst.data() + done, 0, dst.size() - done);
      break;
    }
    done += n;
  }
  return absl::OkStatus();
}

absl::Status PwriteFull(int fd, std::span<const uint8_t> src, uint64_t offset, bool dsync) {
  size_t done = 0;
  while (done < src.size()) {
    iovec iov{const_cast<uint8_t*>(src.data() + done), src.size() - done};
    ssize_t n = ::pwritev2(fd, &iov, 1, offset + done, dsync ? RWF_DSYNC : 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "pwrite");
    }
    if (n == 0) return absl::DataLossError("pwrite wrote 0 bytes");
    done += n;
  }
  return absl::OkStatus();
}

absl::Status DataSync(int fd) {
  while (::fdatasync(fd) != 0) {
    if (errno != EINTR) return ErrnoError(errno, "fdatasync");
  }
  return absl::OkStatus();
}

namespace {
// Returns 0, or the errno of fallocate.
int Fallocate(int fd, int mode, uint64_t offset, uint64_t length) {
  while (::fallocate(fd, mode, offset, length) != 0) {
    if (errno != EINTR) return errno;
  }
  return 0;
}

bool Unsupported(int err) { return err == EOPNOTSUPP || err == ENOSYS; }
}  // namespace

absl::Status PunchHole(int fd, uint64_t offset, uint64_t length) {
  if (length == 0) return absl::OkStatus();
  int err = Fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
  if (err == 0) return absl::OkStatus();
  if (Unsupported(err)) return WriteZeroBytes(fd, offset, length);
  return ErrnoError(err, "fallocate(PUNCH_HOLE)");
}

absl::Status ZeroRange(int fd, uint64_t offset, uint64_t length) {
  if (length == 0) return absl::OkStatus();
  int err = Fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length);
  if (err == 0) return absl::OkStatus();
  if (Unsupported(err)) return WriteZeroBytes(fd, offset, length);
  return ErrnoError(err, "fallocate(ZERO_RANGE)");
}

absl::Status WriteZeroBytes(int fd, uint64_t offset, uint64_t length) {
  while (length > 0) {
    uint64_t n = std::min<uint64_t>(length, kZeroChunk);
    absl::Status s = PwriteFull(fd, {ZeroChunk(), n}, offset, /*dsync=*/false);
    if (!s.ok()) return s;
    offset += n;
    length -= n;
  }
  return absl::OkStatus();
}

const uint8_t* ZeroChunk() {
  static const uint8_t* zeroes = new uint8_t[kZeroChunk]();
  return zeroes;
}

}  // namespace iser::store
