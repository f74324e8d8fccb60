#include "iser/store/uring_file_op.h"

#include <linux/falloc.h>
#include <linux/fs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "iser/store/file_io.h"

namespace iser::store {
namespace {
// Largest transfer per SQE (the kernel caps one read/write near 2 GiB anyway).
constexpr uint64_t kMaxPerSqe = 1u << 30;
}  // namespace

UringFileOp::UringFileOp(Kind kind, SharedFd fd, uint64_t offset, uint8_t* buf, uint64_t length,
                         IoCallback done)
    : kind_(kind),
      fd_(std::move(fd)),
      offset_(offset),
      buf_(buf),
      length_(length),
      done_(std::move(done)) {}

std::unique_ptr<UringFileOp> UringFileOp::Read(SharedFd fd, uint64_t offset, uint8_t* dst,
                                               uint64_t length, IoCallback done) {
  return std::unique_ptr<UringFileOp>(
      new UringFileOp(Kind::kRead, std::move(fd), offset, dst, length, std::move(done)));
}

std::unique_ptr<UringFileOp> UringFileOp::Write(SharedFd fd, uint64_t offset, const uint8_t* src,
                                                uint64_t length, bool dsync, IoCallback done) {
  auto op = std::unique_ptr<UringFileOp>(new UringFileOp(
      Kind::kWrite, std::move(fd), offset, const_cast<uint8_t*>(src), length, std::move(done)));
  op->dsync_ = dsync;
  return op;
}

std::unique_ptr<UringFileOp> UringFileOp::DataSync(SharedFd fd, IoCallback done) {
  return std::unique_ptr<UringFileOp>(
      new UringFileOp(Kind::kDataSync, std::move(fd), 0, nullptr, 0, std::move(done)));
}

std::unique_ptr<UringFileOp> UringFileOp::Fallocate(SharedFd fd, int mode, uint64_t offset,
                                                    uint64_t length, IoCallback done) {
  auto op = std::unique_ptr<UringFileOp>(
      new UringFileOp(Kind::kFallocate, std::move(fd), offset, nullptr, length, std::move(done)));
  op->fallocate_mode_ = mode | FALLOC_FL_KEEP_SIZE;
  return op;
}

void UringFileOp::Prepare(io_uring_sqe* sqe) {
  const int fd = fd_->get();
  const uint64_t left = length_ - done_bytes_;
  switch (kind_) {
    case Kind::kRead:
      in_sqe_ = static_cast<uint32_t>(std::min(left, kMaxPerSqe));
      io_uring_prep_read(sqe, fd, buf_ + done_bytes_, in_sqe_, offset_ + done_bytes_);
      break;
    case Kind::kWrite:
      in_sqe_ = static_cast<uint32_t>(std::min(left, kMaxPerSqe));
      io_uring_prep_write(sqe, fd, buf_ + done_bytes_, in_sqe_, offset_ + done_bytes_);
      if (dsync_) sqe->rw_flags = RWF_DSYNC;
      break;
    case Kind::kWriteZeroes:
      in_sqe_ = static_cast<uint32_t>(std::min<uint64_t>(left, kZeroChunk));
      io_uring_prep_write(sqe, fd, ZeroChunk(), in_sqe_, offset_ + done_bytes_);
      break;
    case Kind::kDataSync:
      io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
      break;
    case Kind::kFallocate:
      io_uring_prep_fallocate(sqe, fd, fallocate_mode_, static_cast<off_t>(offset_),
                              static_cast<off_t>(length_));
      break;
  }
}

bool UringFileOp::Complete(int32_t res) {
  if (res == -EINTR || res == -EAGAIN) return false;  // try the same SQE again
  switch (kind_) {
    case Kind::kRead:
      if (res < 0) return Finish(ErrnoError(-res, "io_uring read"));
      if (res == 0) {  // past end of file: a sparse file reads as zeroes
        std::memset(buf_ + done_bytes_, 0, length_ - done_bytes_);
        return Finish(absl::OkStatus());
      }
      done_bytes_ += res;
      return done_bytes_ >= length_ ? Finish(absl::OkStatus()) : false;
    case Kind::kWrite:
    case Kind::kWriteZeroes:
      if (res < 0) return Finish(ErrnoError(-res, "io_uring write"));
      if (res == 0) return Finish(absl::DataLossError("io_uring write wrote 0 bytes"));
      done_bytes_ += res;
      return done_bytes_ >= length_ ? Finish(absl::OkStatus()) : false;
    case Kind::kDataSync:
      return Finish(res < 0 ? ErrnoError(-res, "io_uring fdatasync") : absl::OkStatus());
    case Kind::kFallocate:
      if (res == -EOPNOTSUPP || res == -ENOSYS) {
        // The file system cannot punch holes / zero ranges: write zeroes instead.
        kind_ = Kind::kWriteZeroes;
        done_bytes_ = 0;
        return length_ == 0 ? Finish(absl::OkStatus()) : false;
      }
      return Finish(res < 0 ? ErrnoError(-res, "io_uring fallocate") : absl::OkStatus());
  }
  return Finish(absl::InternalError("unknown op"));
}

bool UringFileOp::Finish(absl::Status status) {
  IoCallback done = std::move(done_);
  done(std::move(status));
  return true;
}

}  // namespace iser::store
