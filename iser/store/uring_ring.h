// One io_uring per event-loop thread: the asynchronous engine behind the file stores.
//
// The ring belongs to the calling thread and is bound to the EventLoop running there: its
// eventfd (io_uring_register_eventfd) is watched by the loop, and completions are reaped
// and their callbacks run on that thread, never inline inside Submit(). At most depth()
// operations are in the kernel at once; the rest wait in an overflow queue, in order.
// Submissions made from completion callbacks are batched into one io_uring_enter at the
// end of the reap; others are submitted per set_submit_mode().
#ifndef ISER_STORE_URING_RING_H_
#define ISER_STORE_URING_RING_H_

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>

#include "absl/status/statusor.h"
#include "iser/base/event_loop.h"
#include "iser/base/unique_fd.h"

namespace iser::store {

class UringRing {
 public:
  // One queued operation. The ring owns it from Submit() until Complete() returns true.
  class Op {
   public:
    virtual ~Op() = default;
    // Fills the SQE; called again each time the op is resubmitted.
    virtual void Prepare(io_uring_sqe* sqe) = 0;
    // Gets cqe->res on the loop thread. Returns true when finished, false to be
    // resubmitted (for example the rest of a short read).
    virtual bool Complete(int32_t res) = 0;
  };

  enum class SubmitMode {
    kImmediate,     // io_uring_submit() inside every Submit()
    kPerIteration,  // one io_uring_submit() per loop iteration (via EventLoop::Defer)
  };

  static constexpr unsigned kDefaultDepth = 256;

  // The calling thread's ring, bound to EventLoop::Current(); nullptr (callers then use
  // synchronous syscalls) when no loop runs on this thread or io_uring cannot be set up.
  // The reason is logged once per process.
  static UringRing* ForCurrentLoop();
  // Test hook: ForCurrentLoop() acts as if io_uring_queue_init failed on threads that have
  // no ring yet. Also settable with ISER_STORE_DISABLE_IO_URING=1 in the environment.
  static void DisableForTesting(bool disabled);

  ~UringRing();
  UringRing(const UringRing&) = delete;
  UringRing& operator=(const UringRing&) = delete;

  void Submit(std::unique_ptr<Op> op);

  void set_submit_mode(SubmitMode mode) { mode_ = mode; }
  SubmitMode submit_mode() const { return mode_; }
  unsigned depth() const { return depth_; }
  size_t in_flight() const { return in_flight_; }          // in the SQ or the kernel
  size_t queued() const { return overflow_.size(); }       // waiting for a free slot
  uint64_t submit_calls() const { return submit_calls_; }  // io_uring_enter calls made

 private:
  struct Binding;

  UringRing(unsigned depth, uint64_t fork_generation);
  static absl::StatusOr<std::unique_ptr<UringRing>> Create(unsigned depth);
  absl::Status Bind(EventLoop* loop);
  EventLoop* bound_loop() const;

  void Enqueue(Op* op);
  bool TryPrepare(Op* op);
  void ScheduleSubmit();
  void SubmitPending();
  void OnEventFd();
  void Reap();

  io_uring ring_{};
  bool ring_ready_ = false;
  UniqueFd event_fd_;
  const unsigned depth_;
  // The fork generation it was made in: a forked child must not use its parent's ring.
  const uint64_t fork_generation_;
  std::shared_ptr<Binding> binding_;
  SubmitMode mode_ = SubmitMode::kImmediate;
  size_t in_flight_ = 0;
  std::deque<Op*> overflow_;
  bool reaping_ = false;
  bool submit_posted_ = false;
  uint64_t submit_calls_ = 0;
};

}  // namespace iser::store

#endif  // ISER_STORE_URING_RING_H_
