#include "iser/store/uring_ring.h"

#include <pthread.h>

#include <atomic>

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "iser/base/logging.h"

namespace iser::store {

// Which loop the ring's eventfd is registered with. The loop cannot tell us when it is
// destroyed, so its fd watcher owns a LoopGuard whose destructor clears `loop_alive`.
struct UringRing::Binding {
  EventLoop* loop = nullptr;
  UringRing* ring = nullptr;  // cleared when the ring goes away (posted callbacks check it)
  bool loop_alive = true;
};

namespace {

thread_local std::unique_ptr<UringRing> t_ring;
thread_local bool t_setup_failed = false;
std::atomic<bool> g_disabled{false};
std::atomic<bool> g_logged_no_loop{false};
std::atomic<bool> g_logged_setup{false};

bool DisabledByEnv() {
  static const bool disabled = [] {
    const char* v = std::getenv("ISER_STORE_DISABLE_IO_URING");
    return v != nullptr && v[0] == '1';
  }();
  return disabled;
}

class LoopGuard {
 public:
  explicit LoopGuard(std::shared_ptr<void> binding, bool* alive)
      : binding_(std::move(binding)), alive_(alive) {}
  LoopGuard(LoopGuard&& o) noexcept
      : binding_(std::move(o.binding_)), alive_(std::exchange(o.alive_, nullptr)) {}
  LoopGuard& operator=(LoopGuard&&) = delete;
  ~LoopGuard() {
    if (alive_ != nullptr) *alive_ = false;
  }

 private:
  std::shared_ptr<void> binding_;  // keeps *alive_ valid
  bool* alive_;
};

}  // namespace

// Bumped in every forked child, so a ring inherited through fork() is noticed without a
// getpid() syscall on every I/O.
std::atomic<uint64_t> g_fork_generation{0};
const bool g_atfork_registered = [] {
  pthread_atfork(nullptr, nullptr, [] { g_fork_generation.fetch_add(1); });
  return true;
}();

uint64_t ForkGeneration() { return g_fork_generation.load(std::memory_order_relaxed); }

void UringRing::DisableForTesting(bool disabled) { g_disabled = disabled; }

UringRing* UringRing::ForCurrentLoop() {
  EventLoop* loop = EventLoop::Current();
  if (loop == nullptr) {
    if (!g_logged_no_loop.exchange(true))
      ISER_LOG(kInfo, "store: no event loop on this thread; file I/O completes inline");
    return nullptr;
  }
  if (t_ring != nullptr && t_ring->fork_generation_ != ForkGeneration()) {
    // Inherited through fork(): the mappings are shared with the parent. Abandon it.
    (void)t_ring.release();
  }
  if (t_ring == nullptr) {
    if (t_setup_failed) return nullptr;
    absl::StatusOr<std::unique_ptr<UringRing>> ring =
        (g_disabled || DisabledByEnv()) ? absl::UnavailableError("io_uring disabled for testing")
                                        : Create(kDefaultDepth);
    if (!ring.ok()) {
      t_setup_failed = true;
      if (!g_logged_setup.exchange(true))
        ISER_LOG(kWarning, "store: io_uring unavailable (%s); file I/O completes inline",
                 ring.status().ToString());
      return nullptr;
    }
    t_ring = std::move(*ring);
  }
  if (t_ring->bound_loop() != loop) {
    absl::Status s = t_ring->Bind(loop);
    if (!s.ok()) {
      ISER_LOG(kError, "store: cannot watch the io_uring eventfd: %s", s.ToString());
      return nullptr;
    }
  }
  return t_ring.get();
}

absl::StatusOr<std::unique_ptr<UringRing>> UringRing::Create(unsigned depth) {
  std::unique_ptr<UringRing> r(new UringRing(depth, ForkGeneration()));
  io_uring_params params{};
  params.flags = IORING_SETUP_CQSIZE;
  params.cq_entries = depth * 2;
  int rc = io_uring_queue_init_params(depth, &r->ring_, &params);
  if (rc < 0) return absl::ErrnoToStatus(-rc, absl::StrCat("io_uring_setup: ", strerror(-rc)));
  r->ring_ready_ = true;
  r->event_fd_.Reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!r->event_fd_) return absl::ErrnoToStatus(errno, "eventfd");
  rc = io_uring_register_eventfd(&r->ring_, r->event_fd_.get());
  if (rc < 0) return absl::ErrnoToStatus(-rc, "io_uring_register_eventfd");
  return r;
}

UringRing::UringRing(unsigned depth, uint64_t fork_generation)
    : depth_(depth), fork_generation_(fork_generation) {}

UringRing::~UringRing() {
  if (binding_ != nullptr) {
    binding_->ring = nullptr;
    if (binding_->loop_alive) binding_->loop->RemoveFd(event_fd_.get());
  }
  // Operations still in flight are abandoned: their callbacks never run.
  if (ring_ready_) io_uring_queue_exit(&ring_);
}

EventLoop* UringRing::bound_loop() const {
  return (binding_ != nullptr && binding_->loop_alive) ? binding_->loop : nullptr;
}

absl::Status UringRing::Bind(EventLoop* loop) {
  if (EventLoop* old = bound_loop()) old->RemoveFd(event_fd_.get());
  if (binding_ != nullptr) binding_->ring = nullptr;
  auto binding = std::make_shared<Binding>();
  binding->loop = loop;
  binding->ring = this;
  LoopGuard guard(binding, &binding->loop_alive);
  absl::Status s = loop->AddFd(event_fd_.get(), EPOLLIN,
                               [this, guard = std::move(guard)](uint32_t) { OnEventFd(); });
  if (!s.ok()) return s;
  binding_ = std::move(binding);
  submit_posted_ = false;  // a submit posted to the old loop may never run
  SubmitPending();
  return absl::OkStatus();
}

void UringRing::Submit(std::unique_ptr<Op> op) {
  Enqueue(op.release());
  if (!reaping_) ScheduleSubmit();
}

void UringRing::Enqueue(Op* op) {
  if (!overflow_.empty() || !TryPrepare(op)) overflow_.push_back(op);
}

bool UringRing::TryPrepare(Op* op) {
  if (in_flight_ >= depth_) return false;
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) return false;  // cannot happen while in_flight_ < depth_
  op->Prepare(sqe);
  io_uring_sqe_set_data(sqe, op);
  ++in_flight_;
  return true;
}

void UringRing::ScheduleSubmit() {
  if (mode_ == SubmitMode::kImmediate) {
    SubmitPending();
    return;
  }
  if (submit_posted_ || io_uring_sq_ready(&ring_) == 0) return;
  submit_posted_ = true;
  binding_->loop->Defer([binding = binding_] {
    if (binding->ring == nullptr) return;
    binding->ring->submit_posted_ = false;
    binding->ring->SubmitPending();
  });
}

void UringRing::SubmitPending() {
  if (io_uring_sq_ready(&ring_) == 0) return;
  ++submit_calls_;
  int rc = io_uring_submit(&ring_);
  if (rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY) {
    if (io_uring_sq_ready(&ring_) > 0 && bound_loop() != nullptr) {
      // The kernel took only part (or none) of the batch: try again shortly.
      binding_->loop->RunAfter(absl::Microseconds(50), [binding = binding_] {
        if (binding->ring != nullptr) binding->ring->SubmitPending();
      });
    }
    return;
  }
  ISER_LOG(kError, "store: io_uring_submit: %s", strerror(-rc));
}

void UringRing::OnEventFd() {
  uint64_t count;
  [[maybe_unused]] ssize_t n = ::read(event_fd_.get(), &count, sizeof(count));
  Reap();
}

void UringRing::Reap() {
  reaping_ = true;
  io_uring_cqe* cqe = nullptr;
  while (io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) {
    Op* op = static_cast<Op*>(io_uring_cqe_get_data(cqe));
    int32_t res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    --in_flight_;
    if (op->Complete(res)) {
      delete op;
    } else {
      Enqueue(op);
    }
    while (!overflow_.empty() && TryPrepare(overflow_.front())) overflow_.pop_front();
  }
  reaping_ = false;
  SubmitPending();
}

}  // namespace iser::store
