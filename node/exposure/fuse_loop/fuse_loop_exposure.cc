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
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
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
// Writes of at least this much keep the reader's request buffer instead of a copy.
constexpr size_t kTakeBufferBytes = 32 * 1024;

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

// libfuse reads a request with one read() of 256 pages plus FUSE_BUFFER_HEADER_SIZE
// (4096), whatever max_write is: a reader's buffer must be at least that big.
size_t RequestBufferSize() {
  return std::max<size_t>(BufferPool::kBufferSize,
                          256 * static_cast<size_t>(::sysconf(_SC_PAGESIZE)) + 4096);
}

// The request buffer of the reader thread that is running a handler, so that
// OnWriteBuf can take the buffer holding the payload instead of copying it.
struct ReaderBuffer {
  uint8_t* mem = nullptr;
  size_t size = 0;
  bool taken = false;  // set by a handler that keeps `mem`; the reader gets a new one
};
thread_local ReaderBuffer* t_reader_buffer = nullptr;

void SetIoFlusher() {
  // We serve a block device: our own allocations must not wait for writeback to it
  // (the nbd-client/tcmu-runner deadlock). Per thread; threads we start inherit it.
  static std::atomic<bool> logged{false};
  if (::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0 && !logged.exchange(true)) {
    ISER_LOG(kInfo, "PR_SET_IO_FLUSHER: %s (needs CAP_SYS_RESOURCE)", std::strerror(errno));
  }
}

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

  // A read reply waiting for a reply thread.
  struct ReadReply {
    fuse_req_t req;
    uint8_t* buf;  // pool buffer, returned after the reply
    size_t len;    // its length as taken from the pool
    size_t skip;   // where the requested bytes start in it
    size_t size;   // how many were requested
  };

  struct stat FileAttr() const;
  absl::Status WriteZeroes(uint64_t offset, uint64_t length);
  absl::Status StopFuse(bool force);
  void AbortConnection();
  void ReaderMain();
  void ReplyMain();
  void SendReadReply(const ReadReply& r);
  void QueueReadReply(const ReadReply& r);
  void StopReplyThreads();

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
  const size_t request_buffer_size_ = RequestBufferSize();
  std::vector<std::thread> readers_;
  std::atomic<int> readers_running_{0};
  std::unique_ptr<LoopDevice> loop_;
  BufferPool pool_;
  std::atomic<int64_t> in_flight_{0};
  std::atomic<bool> detached_{false};

  // Reply threads (FuseLoopOptions::reply_threads) and their queue.
  std::vector<std::thread> repliers_;
  std::mutex reply_mu_;
  std::condition_variable reply_cv_;
  std::deque<ReadReply> replies_;  // guarded by reply_mu_
  int repliers_waiting_ = 0;       // guarded by reply_mu_; no notify when none waits
  bool repliers_stop_ = false;     // guarded by reply_mu_
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
  // Requests must arrive in the reader's memory buffer (not a pipe): OnWriteBuf hands
  // that buffer to the backend instead of copying the payload out of it.
  conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_AUTO_INVAL_DATA | FUSE_CAP_SPLICE_READ);
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
  ReadReply reply{req, buf, len, offset - begin, size};
  self->backend_.Read(begin, std::span<uint8_t>(buf, len), [self, reply](absl::Status s) {
    if (!s.ok()) {
      fuse_reply_err(reply.req, StatusToErrno(s));
      self->pool_.Put(reply.buf, reply.len);
      self->in_flight_.fetch_sub(1, std::memory_order_release);
    } else if (reply.size >= self->fl_.reply_offload_bytes && !self->repliers_.empty()) {
      self->QueueReadReply(reply);
    } else {
      self->SendReadReply(reply);
    }
  });
}

void FuseLoopDeviceImpl::SendReadReply(const ReadReply& r) {
  fuse_reply_buf(r.req, reinterpret_cast<const char*>(r.buf + r.skip), r.size);
  pool_.Put(r.buf, r.len);
  in_flight_.fetch_sub(1, std::memory_order_release);
}

void FuseLoopDeviceImpl::QueueReadReply(const ReadReply& r) {
  bool stopped, wake;
  {
    std::lock_guard<std::mutex> lock(reply_mu_);
    stopped = repliers_stop_;
    if (!stopped) replies_.push_back(r);
    wake = !stopped && repliers_waiting_ > 0;
  }
  if (stopped) {  // teardown: the reply threads are gone
    SendReadReply(r);
    return;
  }
  if (wake) reply_cv_.notify_one();
}

void FuseLoopDeviceImpl::ReplyMain() {
  SetIoFlusher();
  std::vector<ReadReply> batch;
  std::unique_lock<std::mutex> lock(reply_mu_);
  for (;;) {
    if (replies_.empty()) {
      if (repliers_stop_) return;
      ++repliers_waiting_;
      reply_cv_.wait(lock, [this] { return !replies_.empty() || repliers_stop_; });
      --repliers_waiting_;
      continue;
    }
    // Take a share of the queue, not all of it, so that a second reply thread has work
    // while this one copies.
    size_t n = std::max<size_t>(1, replies_.size() / static_cast<size_t>(fl_.reply_threads));
    batch.assign(replies_.begin(), replies_.begin() + static_cast<ptrdiff_t>(n));
    replies_.erase(replies_.begin(), replies_.begin() + static_cast<ptrdiff_t>(n));
    lock.unlock();
    for (const ReadReply& r : batch) SendReadReply(r);
    lock.lock();
  }
}

void FuseLoopDeviceImpl::StopReplyThreads() {
  {
    std::lock_guard<std::mutex> lock(reply_mu_);
    repliers_stop_ = true;
  }
  reply_cv_.notify_all();
  for (std::thread& t : repliers_) t.join();
  repliers_.clear();
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
  // A large payload sits in the buffer our reader thread read the request into: take
  // that buffer (the reader gets a fresh one) and give the backend the payload in place.
  // A small one, or one not in the reader's memory buffer, is copied once into a pool
  // buffer that lives until the completion (cheaper than a 1 MiB buffer per 4 KiB).
  const uint8_t* data = nullptr;
  uint8_t* owned = nullptr;
  size_t owned_len = 0;
  ReaderBuffer* rb = t_reader_buffer;
  if (size >= kTakeBufferBytes && rb != nullptr && !rb->taken && bufv->count == 1 &&
      bufv->idx == 0 && (bufv->buf[0].flags & FUSE_BUF_IS_FD) == 0) {
    const uint8_t* p = static_cast<const uint8_t*>(bufv->buf[0].mem) + bufv->off;
    if (p >= rb->mem && size <= rb->size &&
        p - rb->mem <= static_cast<ptrdiff_t>(rb->size - size)) {
      data = p;
      owned = rb->mem;
      owned_len = rb->size;
      rb->taken = true;
    }
  }
  if (data == nullptr) {
    owned = self->pool_.Get(size);
    owned_len = size;
    fuse_bufvec dst = FUSE_BUFVEC_INIT(size);
    dst.buf[0].mem = owned;
    ssize_t copied = fuse_buf_copy(&dst, bufv, static_cast<fuse_buf_copy_flags>(0));
    if (copied != static_cast<ssize_t>(size)) {
      self->pool_.Put(owned, owned_len);
      fuse_reply_err(req, copied < 0 ? static_cast<int>(-copied) : EIO);
      return;
    }
    data = owned;
  }
  self->in_flight_.fetch_add(1, std::memory_order_relaxed);
  self->backend_.Write(offset, std::span<const uint8_t>(data, size),
                       [self, req, owned, owned_len, size](absl::Status s) {
                         if (s.ok()) {
                           fuse_reply_write(req, size);
                         } else {
                           fuse_reply_err(req, StatusToErrno(s));
                         }
                         self->pool_.Put(owned, owned_len);
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
  ISER_LOG(kDebug, "%s: fallocate mode 0x%x offset %u length %u", self->options_.name, mode, offset,
           length);
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
    // discard, then write them. Done here on the FUSE reader (never in a completion,
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

  for (int i = 0; i < fl_.reply_threads; ++i) repliers_.emplace_back([this] { ReplyMain(); });
  const int readers = std::max(1, fl_.max_threads);
  readers_running_.store(readers);
  for (int i = 0; i < readers; ++i) readers_.emplace_back([this] { ReaderMain(); });
  // Served from here on (the first request waits for FUSE_INIT).
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

// Our own loop instead of fuse_session_loop_mt(): a fixed set of readers, each owning
// the buffer it reads requests into, which OnWriteBuf may take (ReaderBuffer).
void FuseLoopDeviceImpl::ReaderMain() {
  SetIoFlusher();
  ReaderBuffer rb;
  t_reader_buffer = &rb;
  int rc = 0;
  while (!fuse_session_exited(se_)) {
    if (rb.mem == nullptr) {
      rb.mem = pool_.Get(request_buffer_size_);
      rb.size = request_buffer_size_;
    }
    fuse_buf fbuf;
    std::memset(&fbuf, 0, sizeof(fbuf));
    fbuf.mem = rb.mem;
    fbuf.size = rb.size;
    int res = fuse_session_receive_buf(se_, &fbuf);
    if (res == -EINTR || res == -EAGAIN) continue;
    if (res <= 0) {  // 0: unmounted/aborted (ENODEV) or exited
      rc = res;
      break;
    }
    rb.taken = false;
    fuse_session_process_buf(se_, &fbuf);
    if (rb.taken) rb.mem = nullptr;  // a write kept it until its completion
  }
  t_reader_buffer = nullptr;
  if (rb.mem != nullptr) pool_.Put(rb.mem, rb.size);
  if (rc < 0 && !detached_) ISER_LOG(kWarning, "%s: FUSE reader ended: %d", mount_dir_, rc);
  // One reader failing ends the session (the others see it at their next request).
  fuse_session_exit(se_);
  readers_running_.fetch_sub(1, std::memory_order_release);
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
  if (!readers_.empty()) {
    if (se_ != nullptr) fuse_session_exit(se_);
    for (int waited = 0; readers_running_.load() > 0 && waited < 5000; waited += 2) {
      ::usleep(2000);
    }
    if (readers_running_.load() > 0) {
      ISER_LOG(kWarning, "%s: FUSE connection still busy after unmount; aborting it", mount_dir_);
      AbortConnection();
    }
    for (std::thread& t : readers_) t.join();
    readers_.clear();
  }
  // Queued replies are sent (to a closed connection, harmlessly) before the session goes.
  StopReplyThreads();
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
