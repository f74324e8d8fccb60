#define FUSE_USE_VERSION 312

#include "node/exposure/fuse_loop/fuse_loop_exposure.h"

#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "iser/base/logging.h"
#include "iser/base/unique_fd.h"
#include "node/exposure/fuse_loop/loop_device.h"

namespace iser::node {
namespace {

constexpr fuse_ino_t kFileIno = 2;
constexpr char kFileName[] = "lun";
constexpr size_t kMaxIo = 1 << 20;  // max_write; the kernel then allows 256-page reads too
constexpr double kAttrTimeout = 3600.0;

absl::Status Errno(absl::string_view what) {
  return absl::InternalError(absl::StrFormat("%s: %s", what, std::strerror(errno)));
}

// Page-aligned I/O buffers of kMaxIo (+ one block of slack for widened unaligned reads),
// reused across requests so the data path does not mmap/munmap per request.
class BufferPool {
 public:
  static constexpr size_t kBufferSize = kMaxIo + 65536;
  ~BufferPool() {
    for (void* p : free_) std::free(p);
  }
  uint8_t* Get(size_t size) {
    if (size > kBufferSize) return static_cast<uint8_t*>(std::aligned_alloc(4096, Round(size)));
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        void* p = free_.back();
        free_.pop_back();
        return static_cast<uint8_t*>(p);
      }
    }
    return static_cast<uint8_t*>(std::aligned_alloc(4096, kBufferSize));
  }
  void Put(uint8_t* p, size_t size) {
    if (size <= kBufferSize) {
      std::lock_guard<std::mutex> lock(mu_);
      if (free_.size() < 256) {
        free_.push_back(p);
        return;
      }
    }
    std::free(p);
  }

 private:
  static size_t Round(size_t n) { return (n + 4095) / 4096 * 4096; }
  std::mutex mu_;
  std::vector<void*> free_;
};

const uint8_t* ZeroBlock() {
  static const uint8_t* zeroes = static_cast<const uint8_t*>(std::calloc(1, kMaxIo));
  return zeroes;
}

class FuseLoopDeviceImpl : public FuseLoopDevice {
 public:
  FuseLoopDeviceImpl(BlockBackend& backend, ExposeOptions options, FuseLoopOptions fl)
      : backend_(backend),
        options_(std::move(options)),
        fl_(std::move(fl)),
        size_(backend.size_bytes()),
        block_size_(backend.block_size()) {}
  ~FuseLoopDeviceImpl() override;

  absl::Status Start();

  const std::string& device_path() const override { return device_path_; }
  absl::Status Detach() override;
  FuseLoopHandles handles() const override;
  bool direct_io_active() const override { return loop_ && loop_->direct_io_active(); }

 private:
  static FuseLoopDeviceImpl* Self(fuse_req_t req) {
    return static_cast<FuseLoopDeviceImpl*>(fuse_req_userdata(req));
  }
  static const fuse_lowlevel_ops* Ops();

  // FUSE handlers (libfuse worker threads).
  static void OnInit(void* userdata, fuse_conn_info* conn);
  static void OnLookup(fuse_req_t req, fuse_ino_t parent, const char* name);
  static void OnGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void OnSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                        fuse_file_info* fi);
  static void OnOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void OnRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
  static void OnWriteBuf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* bufv, off_t off,
                         fuse_file_info* fi);
  static void OnFlush(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void OnRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi);
  static void OnFsync(fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi);
  static void OnReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi);
  static void OnStatfs(fuse_req_t req, fuse_ino_t ino);
  static void OnFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
                          fuse_file_info* fi);

  struct stat FileAttr() const;
  absl::Status WriteZeroes(uint64_t offset, uint64_t length);
  absl::Status StopFuse(bool force);
  void AbortConnection();

  BlockBackend& backend_;
  const ExposeOptions options_;
  const FuseLoopOptions fl_;
  const uint64_t size_;
  const uint32_t block_size_;

  std::string mount_dir_;
  std::string file_path_;
  std::string device_path_;
  fuse_session* se_ = nullptr;
  bool mounted_ = false;
  dev_t fuse_dev_ = 0;  // st_dev of the mount; minor() is the connection id in fusectl
  std::thread fuse_thread_;
  std::atomic<bool> fuse_thread_done_{false};
  std::unique_ptr<LoopDevice> loop_;
  BufferPool pool_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<bool> detached_{false};
};

const fuse_lowlevel_ops* FuseLoopDeviceImpl::Ops() {
  static const fuse_lowlevel_ops ops = [] {
    fuse_lowlevel_ops o;
    std::memset(&o, 0, sizeof(o));
    o.init = OnInit;
    o.lookup = OnLookup;
    o.getattr = OnGetattr;
    o.setattr = OnSetattr;
    o.open = OnOpen;
    o.read = OnRead;
    o.write_buf = OnWriteBuf;
    o.flush = OnFlush;
    o.release = OnRelease;
    o.fsync = OnFsync;
    o.readdir = OnReaddir;
    o.statfs = OnStatfs;
    o.fallocate = OnFallocate;
    return o;
  }();
  return &ops;
}

void FuseLoopDeviceImpl::OnInit(void* userdata, fuse_conn_info* conn) {
  // Async direct I/O: an aio from the loop driver becomes a background request and the
  // submitter does not wait, so many requests are in flight at once.
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_AUTO_INVAL_DATA);
  conn->max_write = kMaxIo;
  conn->max_background = 256;
  conn->congestion_threshold = 192;
}

struct stat FuseLoopDeviceImpl::FileAttr() const {
  struct stat st;
  std::memset(&st, 0, sizeof(st));
  st.st_ino = kFileIno;
  st.st_mode = S_IFREG | (options_.read_only ? 0400 : 0600);
  st.st_nlink = 1;
  st.st_size = static_cast<off_t>(size_);
  st.st_blksize = block_size_;
  st.st_blocks = static_cast<blkcnt_t>(size_ / 512);
  return st;
}

void FuseLoopDeviceImpl::OnLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  if (parent != FUSE_ROOT_ID || std::strcmp(name, kFileName) != 0) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  fuse_entry_param e;
  std::memset(&e, 0, sizeof(e));
  e.ino = kFileIno;
  e.generation = 1;
  e.attr = Self(req)->FileAttr();
  e.attr_timeout = kAttrTimeout;
  e.entry_timeout = kAttrTimeout;
  fuse_reply_entry(req, &e);
}

void FuseLoopDeviceImpl::OnGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  if (ino == FUSE_ROOT_ID) {
    struct stat st;
    std::memset(&st, 0, sizeof(st));
    st.st_ino = FUSE_ROOT_ID;
    st.st_mode = S_IFDIR | 0700;
    st.st_nlink = 2;
    fuse_reply_attr(req, &st, kAttrTimeout);
  } else if (ino == kFileIno) {
    struct stat st = Self(req)->FileAttr();
    fuse_reply_attr(req, &st, kAttrTimeout);
  } else {
    fuse_reply_err(req, ENOENT);
  }
}

void FuseLoopDeviceImpl::OnSetattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                                   fuse_file_info* fi) {
  // The file has the LUN's size; only no-op changes (e.g. timestamps) are accepted.
  if (ino == kFileIno && (to_set & FUSE_SET_ATTR_SIZE) &&
      static_cast<uint64_t>(attr->st_size) != Self(req)->size_) {
    fuse_reply_err(req, EPERM);
    return;
  }
  OnGetattr(req, ino, fi);
}

void FuseLoopDeviceImpl::OnOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  if (ino != kFileIno) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  if (Self(req)->options_.read_only && (fi->flags & O_ACCMODE) != O_RDONLY) {
    fuse_reply_err(req, EROFS);
    return;
  }
  fi->direct_io = 1;  // no page cache in between: the loop device is the cache
  fi->keep_cache = 0;
  fi->noflush = 1;  // nothing to do on close(); fsync is what flushes
  fuse_reply_open(req, fi);
}

void FuseLoopDeviceImpl::OnRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                                fuse_file_info*) {
  FuseLoopDeviceImpl* self = Self(req);
  if (ino != kFileIno) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  const uint64_t offset = static_cast<uint64_t>(off);
  if (offset >= self->size_ || size == 0) {
    fuse_reply_buf(req, nullptr, 0);
    return;
  }
  size = std::min<uint64_t>(size, self->size_ - offset);
  // Widen to whole blocks (only unaligned readers, never the loop device, need this).
  const uint64_t bs = self->block_size_;
  const uint64_t begin = offset / bs * bs;
  const uint64_t end = std::min<uint64_t>((offset + size + bs - 1) / bs * bs, self->size_);
  const size_t len = end - begin;
  uint8_t* buf = self->pool_.Get(len);
  self->in_flight_.fetch_add(1, std::memory_order_relaxed);
  self->backend_.Read(begin, std::span<uint8_t>(buf, len),
                      [self, req, buf, len, skip = offset - begin, size](absl::Status s) {
                        if (s.ok()) {
                          fuse_reply_buf(req, reinterpret_cast<const char*>(buf + skip), size);
                        } else {
                          fuse_reply_err(req, StatusToErrno(s));
                        }
                        self->pool_.Put(buf, len);
                        self->in_flight_.fetch_sub(1, std::memory_order_release);
                      });
}

void FuseLoopDeviceImpl::OnWriteBuf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* bufv, off_t off,
                                    fuse_file_info*) {
  FuseLoopDeviceImpl* self = Self(req);
  const size_t size = fuse_buf_size(bufv);
  const uint64_t offset = static_cast<uint64_t>(off);
  if (ino != kFileIno) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  if (self->options_.read_only) {
    fuse_reply_err(req, EROFS);
    return;
  }
  if (offset >= self->size_ || size > self->size_ - offset) {
    fuse_reply_err(req, ENOSPC);
    return;
  }
  if (offset % self->block_size_ != 0 || size % self->block_size_ != 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  // The request buffer belongs to this worker and is reused as soon as we return, so
  // the payload is copied once into a pool buffer that lives until the completion.
  uint8_t* buf = self->pool_.Get(size);
  fuse_bufvec dst = FUSE_BUFVEC_INIT(size);
  dst.buf[0].mem = buf;
  ssize_t copied = fuse_buf_copy(&dst, bufv, static_cast<fuse_buf_copy_flags>(0));
  if (copied != static_cast<ssize_t>(size)) {
    self->pool_.Put(buf, size);
    fuse_reply_err(req, copied < 0 ? static_cast<int>(-copied) : EIO);
    return;
  }
  self->in_flight_.fetch_add(1, std::memory_order_relaxed);
  self->backend_.Write(offset, std::span<const uint8_t>(buf, size),
                       [self, req, buf, size](absl::Status s) {
                         if (s.ok()) {
                           fuse_reply_write(req, size);
                         } else {
                           fuse_reply_err(req, StatusToErrno(s));
                         }
                         self->pool_.Put(buf, size);
                         self->in_flight_.fetch_sub(1, std::memory_order_release);
                       });
}

void FuseLoopDeviceImpl::OnFlush(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  fuse_reply_err(req, 0);
}

void FuseLoopDeviceImpl::OnRelease(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  fuse_reply_err(req, 0);
}

void FuseLoopDeviceImpl::OnFsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) {
  FuseLoopDeviceImpl* self = Self(req);
  self->in_flight_.fetch_add(1, std::memory_order_relaxed);
  self->backend_.Flush([self, req](absl::Status s) {
    fuse_reply_err(req, StatusToErrno(s));
    self->in_flight_.fetch_sub(1, std::memory_order_release);
  });
}

void FuseLoopDeviceImpl::OnReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                                   fuse_file_info*) {
  if (ino != FUSE_ROOT_ID) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  struct Entry {
    const char* name;
    fuse_ino_t ino;
    mode_t mode;
  };
  static constexpr Entry kEntries[] = {
      {".", FUSE_ROOT_ID, S_IFDIR}, {"..", FUSE_ROOT_ID, S_IFDIR}, {kFileName, kFileIno, S_IFREG}};
  std::vector<char> buf(size);
  size_t used = 0;
  for (off_t i = off; i < 3; ++i) {
    struct stat st;
    std::memset(&st, 0, sizeof(st));
    st.st_ino = kEntries[i].ino;
    st.st_mode = kEntries[i].mode;
    size_t need =
        fuse_add_direntry(req, buf.data() + used, size - used, kEntries[i].name, &st, i + 1);
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void FuseLoopDeviceImpl::OnStatfs(fuse_req_t req, fuse_ino_t) {
  FuseLoopDeviceImpl* self = Self(req);
  struct statvfs st;
  std::memset(&st, 0, sizeof(st));
  // f_bsize becomes the loop device's discard granularity.
  st.f_bsize = self->block_size_;
  st.f_frsize = self->block_size_;
  st.f_blocks = self->size_ / self->block_size_;
  st.f_files = 1;
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

absl::Status FuseLoopDeviceImpl::WriteZeroes(uint64_t offset, uint64_t length) {
  while (length > 0) {
    const uint64_t n = std::min<uint64_t>(length, kMaxIo);
    absl::Status s = WaitForCompletion([&](IoCompletion done) {
      backend_.Write(offset, std::span<const uint8_t>(ZeroBlock(), n), std::move(done));
    });
    if (!s.ok()) return s;
    offset += n;
    length -= n;
  }
  return absl::OkStatus();
}

void FuseLoopDeviceImpl::OnFallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                                     fuse_file_info*) {
  FuseLoopDeviceImpl* self = Self(req);
  const uint64_t offset = static_cast<uint64_t>(off), length = static_cast<uint64_t>(len);
  ISER_LOG(kDebug, "%s: fallocate mode 0x%x offset %u length %u", self->options_.name, mode,
           offset, length);
  if (ino != kFileIno) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  if (offset > self->size_ || length > self->size_ - offset) {
    fuse_reply_err(req, (mode & FALLOC_FL_KEEP_SIZE) ? EINVAL : EFBIG);
    return;
  }
  if ((mode & ~FALLOC_FL_KEEP_SIZE) == 0) {  // preallocation: the LUN is all there
    fuse_reply_err(req, 0);
    return;
  }
  if (self->options_.read_only) {
    fuse_reply_err(req, EROFS);
    return;
  }
  const uint64_t bs = self->block_size_;
  if (offset % bs != 0 || length % bs != 0) {
    fuse_reply_err(req, EINVAL);
    return;
  }
  if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) {
    // Discard from the loop device (and write-zeroes without NOUNMAP): UNMAP.
    if (self->backend_.discard_zeroes()) {
      self->in_flight_.fetch_add(1, std::memory_order_relaxed);
      self->backend_.Discard(offset, length, [self, req](absl::Status s) {
        fuse_reply_err(req, StatusToErrno(s));
        self->in_flight_.fetch_sub(1, std::memory_order_release);
      });
      return;
    }
    // PUNCH_HOLE promises zeroes and the loop driver relies on that for write-zeroes:
    // discard, then write them. Done here on the FUSE worker (never in a completion,
    // which may run on the backend's own loop thread and must not wait).
    absl::Status s = WaitForCompletion(
        [&](IoCompletion done) { self->backend_.Discard(offset, length, std::move(done)); });
    if (s.ok()) s = self->WriteZeroes(offset, length);
    fuse_reply_err(req, StatusToErrno(s));
    return;
  }
  if ((mode & ~FALLOC_FL_KEEP_SIZE) == FALLOC_FL_ZERO_RANGE) {
    fuse_reply_err(req, StatusToErrno(self->WriteZeroes(offset, length)));
    return;
  }
  fuse_reply_err(req, EOPNOTSUPP);
}

absl::Status FuseLoopDeviceImpl::Start() {
  if (block_size_ < 512 || block_size_ > 4096 || (block_size_ & (block_size_ - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "LUN block size %u not usable by the loop driver (512..4096)", block_size_));
  }
  if (size_ == 0 || size_ % block_size_ != 0) {
    return absl::InvalidArgumentError(absl::StrFormat("bad LUN size %u", size_));
  }
  std::string tmpl = fl_.mount_parent + "/iser-fuse-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return Errno("mkdtemp " + tmpl);
  mount_dir_ = tmpl;
  file_path_ = mount_dir_ + "/" + kFileName;

  std::string fsname = "iser-csi:" + options_.name;
  std::string mount_opts = absl::StrFormat("fsname=%s,subtype=iser-lun", fsname);
  const char* argv[] = {"iser-fuse-loop", "-o", mount_opts.c_str()};
  fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
  se_ = fuse_session_new(&args, Ops(), sizeof(fuse_lowlevel_ops), this);
  fuse_opt_free_args(&args);
  if (se_ == nullptr) return absl::InternalError("fuse_session_new failed");
  if (fuse_session_mount(se_, mount_dir_.c_str()) != 0) {
    return absl::UnavailableError("cannot mount FUSE at " + mount_dir_ +
                                  " (need root and /dev/fuse)");
  }
  mounted_ = true;

  fuse_thread_ = std::thread([this] {
    // We serve a block device: our own allocations must not wait for writeback to it
    // (the nbd-client/tcmu-runner deadlock). Worker threads inherit the flag.
    if (::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0) {
      ISER_LOG(kInfo, "PR_SET_IO_FLUSHER: %s (needs CAP_SYS_RESOURCE)", std::strerror(errno));
    }
    fuse_loop_config* cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    fuse_loop_cfg_set_max_threads(cfg, static_cast<unsigned>(fl_.max_threads));
    fuse_loop_cfg_set_idle_threads(cfg, static_cast<unsigned>(fl_.max_idle_threads));
    int rc = fuse_session_loop_mt(se_, cfg);
    fuse_loop_cfg_destroy(cfg);
    if (rc != 0 && !detached_) ISER_LOG(kWarning, "%s: FUSE loop ended: %d", mount_dir_, rc);
    fuse_thread_done_.store(true);
  });
  // Served by the thread above (the first request waits for FUSE_INIT).
  struct stat st;
  if (::stat(mount_dir_.c_str(), &st) == 0) fuse_dev_ = st.st_dev;

  int flags = (options_.read_only ? O_RDONLY : O_RDWR) | O_DIRECT | O_CLOEXEC;
  UniqueFd file(::open(file_path_.c_str(), flags));
  if (!file) return Errno("open " + file_path_);
  LoopOptions lo;
  lo.logical_block_size = block_size_;
  lo.direct_io = true;
  lo.read_only = options_.read_only;
  lo.file_name = fsname;
  auto loop = LoopDevice::Attach(file.get(), lo);
  if (!loop.ok()) return loop.status();
  loop_ = std::move(*loop);
  device_path_ = loop_->path();
  ISER_LOG(kInfo, "%s: exposed %u bytes (block %u) as %s over %s (dio %d)", options_.name, size_,
           block_size_, device_path_, file_path_, loop_->direct_io_active() ? 1 : 0);
  return absl::OkStatus();
}

FuseLoopHandles FuseLoopDeviceImpl::handles() const {
  FuseLoopHandles h;
  h.fuse_fd = se_ != nullptr ? fuse_session_fd(se_) : -1;
  h.loop_fd = loop_ ? loop_->fd() : -1;
  h.mount_dir = mount_dir_;
  h.file_path = file_path_;
  h.device_path = device_path_;
  return h;
}

void FuseLoopDeviceImpl::AbortConnection() {
  if (fuse_dev_ == 0) return;
  struct stat st;
  if (::stat("/sys/fs/fuse/connections", &st) == 0 && st.st_nlink <= 2) {
    ::mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, nullptr);  // may be absent
  }
  std::ofstream abort(absl::StrFormat("/sys/fs/fuse/connections/%u/abort", minor(fuse_dev_)));
  abort << "1";
}

absl::Status FuseLoopDeviceImpl::StopFuse(bool force) {
  absl::Status status;
  if (mounted_) {
    // Lazy unmount: the superblock goes away (and the connection ends, waking the
    // workers with ENODEV) once the loop driver has dropped the file.
    if (force) AbortConnection();
    if (::umount2(mount_dir_.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
      status = Errno("umount " + mount_dir_);
    }
    mounted_ = false;
  }
  if (fuse_thread_.joinable()) {
    if (se_ != nullptr) fuse_session_exit(se_);
    for (int waited = 0; !fuse_thread_done_.load() && waited < 5000; waited += 2) {
      ::usleep(2000);
    }
    if (!fuse_thread_done_.load()) {
      ISER_LOG(kWarning, "%s: FUSE connection still busy after unmount; aborting it", mount_dir_);
      AbortConnection();
    }
    fuse_thread_.join();
  }
  if (se_ != nullptr) {
    fuse_session_unmount(se_);  // closes /dev/fuse; the mount is already gone
    fuse_session_destroy(se_);
    se_ = nullptr;
  }
  if (!mount_dir_.empty()) {
    if (::rmdir(mount_dir_.c_str()) != 0 && errno != ENOENT && status.ok()) {
      status = Errno("rmdir " + mount_dir_);
    }
    mount_dir_.clear();
  }
  return status;
}

absl::Status FuseLoopDeviceImpl::Detach() {
  if (detached_) return absl::OkStatus();
  if (loop_) {
    if (loop_->Busy()) {
      return absl::FailedPreconditionError(device_path_ + " is in use (still mounted?)");
    }
    absl::Status s = loop_->Sync();
    if (!s.ok()) ISER_LOG(kWarning, "%s: %s", device_path_, s.ToString());
    s = loop_->Detach();
    if (!s.ok()) return s;
    loop_.reset();
  }
  // The loop driver completes its requests before releasing the file; wait for the
  // replies our completions are still sending.
  for (int waited = 0; in_flight_.load(std::memory_order_acquire) > 0; waited += 1) {
    if (waited > 30000) return absl::DeadlineExceededError("backend I/O did not complete");
    ::usleep(1000);
  }
  absl::Status flushed =
      WaitForCompletion([this](IoCompletion done) { backend_.Flush(std::move(done)); });
  absl::Status stopped = StopFuse(/*force=*/false);
  detached_ = true;
  ISER_LOG(kInfo, "%s: detached %s", options_.name, device_path_);
  if (!flushed.ok()) return flushed;
  return stopped;
}

FuseLoopDeviceImpl::~FuseLoopDeviceImpl() {
  if (detached_) return;
  absl::Status s = Detach();
  if (s.ok()) return;
  // Still in use or half set up: tear down anyway, the backend reference is about to
  // dangle. Users of the device see I/O errors from here on.
  ISER_LOG(kError, "%s: forced teardown of %s: %s", options_.name, device_path_, s.ToString());
  loop_.reset();  // LOOP_CLR_FD marks it autoclear; it goes when the last opener closes
  detached_ = true;
  s = StopFuse(/*force=*/true);
  if (!s.ok()) ISER_LOG(kWarning, "%s: %s", options_.name, s.ToString());
}

}  // namespace

absl::StatusOr<std::unique_ptr<FuseLoopDevice>> FuseLoopExposure::ExposeFuseLoop(
    BlockBackend& backend, const ExposeOptions& options) {
  auto dev = std::make_unique<FuseLoopDeviceImpl>(backend, options, options_);
  absl::Status s = dev->Start();
  if (!s.ok()) return s;  // ~FuseLoopDeviceImpl undoes what Start() did
  return std::unique_ptr<FuseLoopDevice>(std::move(dev));
}

absl::StatusOr<std::unique_ptr<ExposedDevice>> FuseLoopExposure::Expose(
    BlockBackend& backend, const ExposeOptions& options) {
  auto dev = ExposeFuseLoop(backend, options);
  if (!dev.ok()) return dev.status();
  return std::unique_ptr<ExposedDevice>(std::move(*dev));
}

}  // namespace iser::node
