#include "iser/base/event_loop.h"

#include <sched.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace iser {
namespace {
thread_local EventLoop* t_current_loop = nullptr;

absl::Status ErrnoStatus(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}
}  // namespace

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::Create() {
  UniqueFd ep(epoll_create1(EPOLL_CLOEXEC));
  if (!ep) return ErrnoStatus("epoll_create1");
  UniqueFd wake(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake) return ErrnoStatus("eventfd");
  UniqueFd tfd(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!tfd) return ErrnoStatus("timerfd_create");
  auto loop =
      std::unique_ptr<EventLoop>(new EventLoop(std::move(ep), std::move(wake), std::move(tfd)));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // wake fd
  if (epoll_ctl(loop->epoll_fd_.get(), EPOLL_CTL_ADD, loop->wake_fd_.get(), &ev) != 0)
    return ErrnoStatus("epoll_ctl(wake)");
  ev.data.ptr = loop.get();  // marks the timer fd
  if (epoll_ctl(loop->epoll_fd_.get(), EPOLL_CTL_ADD, loop->timer_fd_.get(), &ev) != 0)
    return ErrnoStatus("epoll_ctl(timer)");
  return loop;
}

EventLoop::EventLoop(UniqueFd epoll_fd, UniqueFd wake_fd, UniqueFd timer_fd)
    : epoll_fd_(std::move(epoll_fd)),
      wake_fd_(std::move(wake_fd)),
      timer_fd_(std::move(timer_fd)),
      owner_(std::this_thread::get_id()) {}

EventLoop::~EventLoop() {
  if (t_current_loop == this) t_current_loop = nullptr;
}

EventLoop* EventLoop::Current() { return t_current_loop; }

absl::Status EventLoop::AddFd(int fd, uint32_t events, FdCallback callback) {
  auto w = std::make_unique<Watcher>();
  w->fd = fd;
  w->callback = std::move(callback);
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = w.get();
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return ErrnoStatus("epoll_ctl ADD");
  watchers_[fd] = std::move(w);
  return absl::OkStatus();
}

absl::Status EventLoop::ModifyFd(int fd, uint32_t events) {
  auto it = watchers_.find(fd);
  if (it == watchers_.end()) return absl::NotFoundError("fd not watched");
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = it->second.get();
  if (epoll_ctl(epoll_fd_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) return ErrnoStatus("epoll_ctl MOD");
  return absl::OkStatus();
}

void EventLoop::RemoveFd(int fd) {
  auto it = watchers_.find(fd);
  if (it == watchers_.end()) return;
  epoll_ctl(epoll_fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
  it->second->removed = true;
  // The watcher may be running right now (or be later in this epoll batch): keep it alive
  // until the batch is done.
  graveyard_.push_back(std::move(it->second));
  watchers_.erase(it);
}

void EventLoop::Post(Callback callback) {
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    posted_.push_back(std::move(callback));
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_.get(), &one, sizeof(one));
}

void EventLoop::Stop() {
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    stop_requested_ = true;
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_.get(), &one, sizeof(one));
}

EventLoop::TimerId EventLoop::RunAfter(absl::Duration delay, Callback callback) {
  TimerId id = next_timer_id_++;
  timer_callbacks_[id] = std::move(callback);
  timer_heap_.push(Timer{absl::Now() + delay, id});
  ArmTimerFd();
  return id;
}

void EventLoop::CancelTimer(TimerId id) { timer_callbacks_.erase(id); }

void EventLoop::ArmTimerFd() {
  while (!timer_heap_.empty() && !timer_callbacks_.contains(timer_heap_.top().id))
    timer_heap_.pop();
  itimerspec spec{};
  if (!timer_heap_.empty()) {
    absl::Duration left = timer_heap_.top().deadline - absl::Now();
    if (left < absl::Microseconds(1)) left = absl::Microseconds(1);
    spec.it_value = absl::ToTimespec(left);
  }
  timerfd_settime(timer_fd_.get(), 0, &spec, nullptr);
}

void EventLoop::FireTimers() {
  uint64_t expirations;
  [[maybe_unused]] ssize_t n = ::read(timer_fd_.get(), &expirations, sizeof(expirations));
  absl::Time now = absl::Now();
  while (!timer_heap_.empty() && timer_heap_.top().deadline <= now) {
    TimerId id = timer_heap_.top().id;
    timer_heap_.pop();
    auto it = timer_callbacks_.find(id);
    if (it == timer_callbacks_.end()) continue;
    Callback cb = std::move(it->second);
    timer_callbacks_.erase(it);
    cb();
  }
  ArmTimerFd();
}

void EventLoop::DrainPosted() {
  uint64_t count;
  [[maybe_unused]] ssize_t n = ::read(wake_fd_.get(), &count, sizeof(count));
  std::vector<Callback> batch;
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    batch.swap(posted_);
    if (stop_requested_) stop_ = true;
  }
  for (auto& cb : batch) cb();
}

void EventLoop::RunDeferred() {
  // Deferred work may defer more; run until quiet (bounded so a bug can't spin forever).
  for (int round = 0; round < 64 && !deferred_.empty(); ++round) {
    std::vector<Callback> batch;
    batch.swap(deferred_);
    for (auto& cb : batch) cb();
  }
}

void EventLoop::Run() {
  owner_ = std::this_thread::get_id();
  EventLoop* previous = t_current_loop;
  t_current_loop = this;
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    stop_ = stop_requested_;
  }
  epoll_event events[64];
  absl::Time poll_until = absl::InfinitePast();
  while (!stop_) {
    bool polling = absl::Now() < poll_until;
    int timeout = (!deferred_.empty() || polling) ? 0 : -1;
    int n = epoll_wait(epoll_fd_.get(), events, 64, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (n > 0 && busy_poll_ > absl::ZeroDuration()) {
      poll_until = absl::Now() + busy_poll_;
    } else if (n == 0 && polling) {
      // Nothing yet: let anything else runnable on this CPU (e.g. a local client) go first.
      sched_yield();
    }
    for (int i = 0; i < n; ++i) {
      void* tag = events[i].data.ptr;
      if (tag == nullptr) {
        DrainPosted();
      } else if (tag == this) {
        FireTimers();
      } else {
        auto* w = static_cast<Watcher*>(tag);
        if (!w->removed) w->callback(events[i].events);
      }
    }
    RunDeferred();
    graveyard_.clear();
  }
  // Run what was posted before Stop() so that shutdown work queued by other threads is done.
  DrainPosted();
  RunDeferred();
  t_current_loop = previous;
}

}  // namespace iser
