// A single-threaded epoll event loop: fd readiness, timers and cross-thread posts.
//
// Every I/O object (connection, io_uring ring, ...) belongs to exactly one loop and is
// touched only from that loop's thread; other threads reach it through Post(). This is
// the run-to-completion model of SPDK and Envoy: no locks on the I/O path.
#ifndef ISER_BASE_EVENT_LOOP_H_
#define ISER_BASE_EVENT_LOOP_H_

#include <sys/epoll.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <queue>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "iser/base/unique_fd.h"

namespace iser {

class EventLoop {
 public:
  using Callback = absl::AnyInvocable<void()>;
  // Called with the epoll event mask (EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP, ...).
  using FdCallback = absl::AnyInvocable<void(uint32_t events)>;
  using TimerId = uint64_t;

  static absl::StatusOr<std::unique_ptr<EventLoop>> Create();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // The loop whose Run() is executing on the calling thread, or nullptr.
  static EventLoop* Current();

  // Watch `fd` for `events` (EPOLLIN/EPOLLOUT; edge-triggered if EPOLLET is given).
  // The loop does not own the fd. Loop thread only.
  absl::Status AddFd(int fd, uint32_t events, FdCallback callback);
  absl::Status ModifyFd(int fd, uint32_t events);
  // Safe to call from inside the fd's own callback; no further callbacks for it follow.
  void RemoveFd(int fd);

  // Runs `callback` on the loop thread soon. Thread-safe; the only cross-thread entry.
  void Post(Callback callback);

  // One-shot timer. Loop thread only. Cancelling an expired or unknown id is a no-op.
  TimerId RunAfter(absl::Duration delay, Callback callback);
  void CancelTimer(TimerId id);

  // Runs `callback` on the loop thread after the current batch of events has been
  // handled, before the loop sleeps again. Loop thread only; no syscall. Used to coalesce
  // work (e.g. one writev for all responses produced while handling a batch).
  void Defer(Callback callback) { deferred_.push_back(std::move(callback)); }

  // Runs until Stop(). Stop() is thread-safe and may be called before Run().
  void Run();
  void Stop();

  bool IsLoopThread() const { return std::this_thread::get_id() == owner_; }

  // After a batch of events, keep polling (without sleeping) for up to `window` before
  // blocking in epoll_wait again. Trades CPU for latency: a request that arrives within
  // the window is picked up without a scheduler wakeup (10-50 us on these machines).
  void set_busy_poll(absl::Duration window) { busy_poll_ = window; }

 private:
  struct Watcher {
    int fd;
    FdCallback callback;
    bool removed = false;
  };
  struct Timer {
    absl::Time deadline;
    TimerId id;
    bool operator>(const Timer& o) const { return deadline > o.deadline; }
  };

  EventLoop(UniqueFd epoll_fd, UniqueFd wake_fd, UniqueFd timer_fd);
  void DrainPosted();
  void FireTimers();
  void ArmTimerFd();

  UniqueFd epoll_fd_;
  UniqueFd wake_fd_;   // eventfd written by Post()/Stop()
  UniqueFd timer_fd_;  // timerfd armed for the earliest timer
  std::thread::id owner_;
  bool stop_ = false;
  absl::Duration busy_poll_ = absl::ZeroDuration();

  std::unordered_map<int, std::unique_ptr<Watcher>> watchers_;
  std::vector<std::unique_ptr<Watcher>> graveyard_;
  std::vector<Callback> deferred_;
  void RunDeferred();  // removed during dispatch

  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timer_heap_;
  std::unordered_map<TimerId, Callback> timer_callbacks_;
  TimerId next_timer_id_ = 1;

  std::mutex posted_mu_;  // control plane: guards posted_ and stop_requested_
  std::vector<Callback> posted_;
  bool stop_requested_ = false;
};

}  // namespace iser

#endif  // ISER_BASE_EVENT_LOOP_H_
