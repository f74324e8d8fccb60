#include "node/attach/lun_backend.h"

#include <array>
#include <future>
#include <utility>
#include <vector>

#include "iser/base/logging.h"
#include "iser/initiator/session.h"

namespace iser::node {

LunBackend::LunBackend(EventLoop* loop, initiator::LunHandle* lun)
    : loop_(loop),
      lun_(lun),
      size_bytes_(lun->capacity_bytes()),
      block_size_(lun->block_size()),
      thin_(lun->thin_provisioned()) {}

absl::StatusOr<std::unique_ptr<LunBackend>> LunBackend::Create(EventLoop* loop,
                                                               initiator::LunHandle* lun) {
  std::unique_ptr<LunBackend> b(new LunBackend(loop, lun));
  if (b->size_bytes_ == 0 || b->block_size_ == 0) {
    return absl::FailedPreconditionError("the LUN reports no capacity");
  }
  // LunHandle keeps only LBPME; read LBPRZ (READ CAPACITY(16) byte 14 bit 6) ourselves.
  auto buf = std::make_shared<std::array<uint8_t, 32>>();
  std::promise<absl::StatusOr<initiator::ScsiResult>> p;
  loop->Post([&p, lun, buf] {
    initiator::ScsiCommand c;
    c.lun = lun->lun();
    c.cdb[0] = 0x9e;  // SERVICE ACTION IN(16)
    c.cdb[1] = 0x10;  // READ CAPACITY(16)
    c.cdb[13] = 32;   // allocation length
    c.read = std::span<uint8_t>(buf->data(), buf->size());
    lun->session()->Submit(
        std::move(c), [&p](absl::StatusOr<initiator::ScsiResult> r) { p.set_value(std::move(r)); });
  });
  absl::StatusOr<initiator::ScsiResult> r = p.get_future().get();
  if (r.ok() && r->status == 0) {
    b->lbprz_ = ((*buf)[14] & 0x40) != 0;
  } else {
    ISER_LOG(kWarning,
             "READ CAPACITY(16) for LBPRZ failed; assuming discarded blocks "
             "do not read as zeroes");
  }
  return b;
}

void LunBackend::Read(uint64_t offset, std::span<uint8_t> dst, IoCompletion done) {
  ios_.fetch_add(1, std::memory_order_relaxed);
  Enqueue({false, offset, dst.data(), dst.size(), std::move(done)});
}

void LunBackend::Write(uint64_t offset, std::span<const uint8_t> src, IoCompletion done) {
  ios_.fetch_add(1, std::memory_order_relaxed);
  // The initiator only reads from write buffers; Op keeps one pointer type for both.
  Enqueue({true, offset, const_cast<uint8_t*>(src.data()), src.size(), std::move(done)});
}

void LunBackend::Enqueue(Op op) {
  bool post;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending_.push_back(std::move(op));
    post = !drain_posted_;
    drain_posted_ = true;
  }
  // A Drain() already queued will pick this op up. Each posted Drain() finds at least
  // the op that posted it, whose completion has not run: the backend outlives it.
  if (post) loop_->Post([this] { Drain(); });
}

void LunBackend::Drain() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_.swap(pending_);
    drain_posted_ = false;
  }
  for (Op& op : draining_) {
    if (op.write) {
      lun_->WriteAt(op.offset, std::span<const uint8_t>(op.data, op.length), std::move(op.done));
    } else {
      lun_->ReadAt(op.offset, std::span<uint8_t>(op.data, op.length), std::move(op.done));
    }
  }
  draining_.clear();
}

void LunBackend::Flush(IoCompletion done) {
  loop_->Post([lun = lun_, done = std::move(done)]() mutable { lun->Flush(std::move(done)); });
}

void LunBackend::Discard(uint64_t offset, uint64_t length, IoCompletion done) {
  if (offset % block_size_ != 0 || length % block_size_ != 0) {
    return done(absl::InvalidArgumentError("discard not aligned to the LUN block size"));
  }
  loop_->Post([lun = lun_, lba = offset / block_size_, blocks = length / block_size_,
               done = std::move(done)]() mutable { lun->Unmap(lba, blocks, std::move(done)); });
}

}  // namespace iser::node
