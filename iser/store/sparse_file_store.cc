#include "iser/store/sparse_file_store.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "iser/store/file_io.h"
#include "iser/store/lba_status.h"
#include "iser/store/uring_ring.h"

namespace iser::store {
namespace {

absl::Status OpenError(int err, const std::string& path) {
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(
          absl::StrCat(path, ": no such file (give Options::size_bytes to create it)"));
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(absl::StrCat(path, ": ", std::strerror(err)));
    case EISDIR:
      return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory"));
    default:
      return ErrnoError(err, absl::StrCat("open ", path));
  }
}

// Opens (creating if allowed and missing). Sets *created when this call made the file.
absl::StatusOr<UniqueFd> OpenFile(const std::string& path, bool read_only, bool may_create,
                                  bool* created) {
  *created = false;
  const int access = read_only ? O_RDONLY : O_RDWR;
  for (;;) {
    UniqueFd fd(::open(path.c_str(), access | O_CLOEXEC));
    if (fd) return fd;
    if (errno != ENOENT || !may_create) return OpenError(errno, path);
    fd.Reset(::open(path.c_str(), access | O_CLOEXEC | O_CREAT | O_EXCL, 0600));
    if (fd) {
      *created = true;
      return fd;
    }
    if (errno != EEXIST) return OpenError(errno, path);
    // Someone created it between our two opens: open it as existing.
  }
}

// Whether the file system punches holes: a KEEP_SIZE punch past end of file changes nothing.
bool ProbePunchHole(int fd, uint64_t size, uint32_t block_size) {
  return ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, size, block_size) == 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SparseFileStore>> SparseFileStore::Open(absl::string_view path_view,
                                                                       const Options& options) {
  std::string path(path_view);
  if (options.block_size != 512 && options.block_size != 4096)
    return absl::InvalidArgumentError(
        absl::StrCat("block size ", options.block_size, " (want 512 or 4096)"));
  if (options.size_bytes % options.block_size != 0)
    return absl::InvalidArgumentError(absl::StrCat(
        "size ", options.size_bytes, " is not a multiple of the block size ", options.block_size));
  bool created = false;
  absl::StatusOr<UniqueFd> opened =
      OpenFile(path, options.read_only, options.size_bytes > 0 && !options.read_only, &created);
  if (!opened.ok()) return opened.status();
  UniqueFd fd = std::move(*opened);
  // Whatever fails from here on, do not leave behind a file this call created.
  auto fail = [&](absl::Status s) {
    if (created) ::unlink(path.c_str());
    return s;
  };

  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return fail(ErrnoError(errno, absl::StrCat("fstat ", path)));
  if (!S_ISREG(st.st_mode))
    return fail(absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file")));

  const int lock = (options.read_only ? LOCK_SH : LOCK_EX) | LOCK_NB;
  while (::flock(fd.get(), lock) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK)
      return fail(absl::UnavailableError(
          absl::StrCat(path, ": in use (locked) by another store or process")));
    return fail(ErrnoError(errno, absl::StrCat("flock ", path)));
  }

  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (options.size_bytes > size) {
    if (options.read_only)
      return fail(absl::FailedPreconditionError(absl::StrCat(
          path, ": read-only file has ", size, " bytes, fewer than ", options.size_bytes)));
    if (::ftruncate(fd.get(), static_cast<off_t>(options.size_bytes)) != 0)
      return fail(ErrnoError(errno, absl::StrCat("ftruncate ", path)));
    size = options.size_bytes;
  }
  if (size == 0)
    return fail(absl::InvalidArgumentError(absl::StrCat(path, ": empty file and no size given")));
  if (size % options.block_size != 0)
    return fail(absl::InvalidArgumentError(absl::StrCat(
        path, ": size ", size, " is not a multiple of the block size ", options.block_size)));

  bool unmap = !options.read_only && ProbePunchHole(fd.get(), size, options.block_size);
  auto shared = std::make_shared<const UniqueFd>(std::move(fd));
  return std::unique_ptr<SparseFileStore>(
      new SparseFileStore(std::move(path), std::move(shared), options, size, unmap));
}

SparseFileStore::SparseFileStore(std::string path, SharedFd fd, const Options& options,
                                 uint64_t size, bool supports_unmap)
    : path_(std::move(path)),
      fd_(std::move(fd)),
      nowait_ok_(options.nowait_fast_path),
      block_size_(options.block_size),
      read_only_(options.read_only),
      use_io_uring_(options.use_io_uring),
      supports_unmap_(supports_unmap),
      size_bytes_(size) {
  struct statfs fs;
  memory_backed_ = options.nowait_fast_path && fstatfs(fd_->get(), &fs) == 0 &&
                   static_cast<uint64_t>(fs.f_type) == TMPFS_MAGIC;
}

UringRing* SparseFileStore::Ring() const {
  return use_io_uring_ ? UringRing::ForCurrentLoop() : nullptr;
}

absl::Status SparseFileStore::CheckRange(uint64_t offset, uint64_t length) const {
  if (offset % block_size_ != 0 || length % block_size_ != 0)
    return absl::InvalidArgumentError(absl::StrCat("unaligned range offset=", offset,
                                                   " length=", length, " block=", block_size_));
  if (offset > size_bytes_ || length > size_bytes_ - offset)
    return absl::OutOfRangeError(absl::StrCat("range offset=", offset, " length=", length,
                                              " beyond capacity ", size_bytes_));
  return absl::OkStatus();
}

absl::Status SparseFileStore::CheckWritable() const {
  if (read_only_) return absl::FailedPreconditionError(absl::StrCat(path_, " is read-only"));
  return absl::OkStatus();
}

void SparseFileStore::Read(uint64_t offset, std::span<uint8_t> dst, IoCallback done) {
  if (absl::Status s = CheckRange(offset, dst.size()); !s.ok()) return done(std::move(s));
  if (dst.empty()) return done(absl::OkStatus());
  if (UringRing* ring = Ring()) {
    // Page-cache hits complete inline with a non-blocking read (RWF_NOWAIT never waits
    // for I/O), saving the ring round trip; what it could not read goes through the ring.
    size_t got = TryNowait(/*write=*/false, offset, dst.data(), dst.size(), /*fua=*/false);
    if (got == dst.size()) return done(absl::OkStatus());
    ring->Submit(
        UringFileOp::Read(fd_, offset + got, dst.data() + got, dst.size() - got, std::move(done)));
    return;
  }
  done(PreadFull(fd_->get(), dst, offset));
}

void SparseFileStore::Write(uint64_t offset, std::span<const uint8_t> src, bool fua,
                            IoCallback done) {
  if (absl::Status s = CheckWritable(); !s.ok()) return done(std::move(s));
  if (absl::Status s = CheckRange(offset, src.size()); !s.ok()) return done(std::move(s));
  if (src.empty()) return fua ? Flush(std::move(done)) : done(absl::OkStatus());
  if (UringRing* ring = Ring()) {
    size_t put = fua ? 0
                     : TryNowait(/*write=*/true, offset, const_cast<uint8_t*>(src.data()),
                                 src.size(), false);
    if (put == src.size()) return done(absl::OkStatus());
    ring->Submit(UringFileOp::Write(fd_, offset + put, src.data() + put, src.size() - put, fua,
                                    std::move(done)));
    return;
  }
  done(PwriteFull(fd_->get(), src, offset, fua));
}

size_t SparseFileStore::TryNowait(bool write, uint64_t offset, uint8_t* data, size_t length,
                                  bool fua) {
  if (!nowait_ok_ && !memory_backed_) return 0;
  iovec iov{data, length};
  int flags = (memory_backed_ ? 0 : RWF_NOWAIT) | (fua ? RWF_DSYNC : 0);
  ssize_t n = write ? pwritev2(fd_->get(), &iov, 1, static_cast<off_t>(offset), flags)
                    : preadv2(fd_->get(), &iov, 1, static_cast<off_t>(offset), flags);
  if (n < 0) {
    // EOPNOTSUPP: this file system can't do non-blocking buffered I/O; stop trying.
    if (errno == EOPNOTSUPP || errno == EINVAL) nowait_ok_ = false;
    return 0;
  }
  return static_cast<size_t>(n);
}

void SparseFileStore::Flush(IoCallback done) {
  if (UringRing* ring = Ring()) {
    ring->Submit(UringFileOp::DataSync(fd_, std::move(done)));
    return;
  }
  done(DataSync(fd_->get()));
}

void SparseFileStore::Unmap(uint64_t offset, uint64_t length, IoCallback done) {
  Fallocate(/*punch=*/true, offset, length, std::move(done));
}

void SparseFileStore::WriteZeroes(uint64_t offset, uint64_t length, bool deallocate,
                                  IoCallback done) {
  Fallocate(/*punch=*/deallocate, offset, length, std::move(done));
}

void SparseFileStore::Fallocate(bool punch, uint64_t offset, uint64_t length, IoCallback done) {
  if (absl::Status s = CheckWritable(); !s.ok()) return done(std::move(s));
  if (absl::Status s = CheckRange(offset, length); !s.ok()) return done(std::move(s));
  if (length == 0) return done(absl::OkStatus());
  if (UringRing* ring = Ring()) {
    int mode = punch ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE;
    ring->Submit(UringFileOp::Fallocate(fd_, mode, offset, length, std::move(done)));
    return;
  }
  done(punch ? PunchHole(fd_->get(), offset, length) : ZeroRange(fd_->get(), offset, length));
}

absl::StatusOr<LbaRun> SparseFileStore::GetLbaStatus(uint64_t offset, uint64_t max_length) {
  if (offset % block_size_ != 0)
    return absl::InvalidArgumentError(absl::StrCat("unaligned offset ", offset));
  if (offset >= size_bytes_)
    return absl::OutOfRangeError(absl::StrCat("offset ", offset, " beyond capacity ", size_bytes_));
  uint64_t length = std::min(max_length, size_bytes_ - offset) / block_size_ * block_size_;
  if (length == 0) return absl::InvalidArgumentError("max_length is less than one block");
  return ProbeLbaRun(fd_->get(), offset, offset + length, block_size_);
}

absl::Status SparseFileStore::Resize(uint64_t new_size_bytes) {
  if (absl::Status s = CheckWritable(); !s.ok()) return s;
  if (new_size_bytes == 0 || new_size_bytes % block_size_ != 0)
    return absl::InvalidArgumentError(
        absl::StrCat("new size ", new_size_bytes, " must be a non-zero multiple of ", block_size_));
  while (::ftruncate(fd_->get(), static_cast<off_t>(new_size_bytes)) != 0) {
    if (errno != EINTR) return ErrnoError(errno, absl::StrCat("ftruncate ", path_));
  }
  size_bytes_ = new_size_bytes;
  return absl::OkStatus();
}

}  // namespace iser::store
