// Event channels of the software iWARP device. The completion channel: how an armed
// CQ's event reaches the consumer, through the eventfd (any thread's loop) or, on the
// device's own loop, straight to the watcher after the batch that produced it. Both
// channels: their fd is readable exactly while they hold events (a level-triggered loop
// would spin on a readable fd with nothing behind it).
#include "iser/transport/rdma/softiwarp/cq.h"

#include <poll.h>

#include <future>
#include <memory>
#include <thread>

#include "gtest/gtest.h"
#include "iser/base/event_loop.h"
#include "iser/transport/rdma/softiwarp/cm.h"
#include "iser/transport/rdma/softiwarp/softiwarp.h"

namespace iser::softiwarp {
namespace {

bool Readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

rdma::WorkCompletion Wc(uint64_t id) {
  rdma::WorkCompletion wc;
  wc.wr_id = id;
  return wc;
}

// A loop running on its own thread; On() runs a function there and waits for it.
class LoopThread {
 public:
  LoopThread() : loop_(*EventLoop::Create()), thread_([this] { loop_->Run(); }) {}
  ~LoopThread() {
    loop_->Stop();
    thread_.join();
  }
  EventLoop* loop() { return loop_.get(); }
  template <typename F>
  void On(F f) {
    std::promise<void> done;
    loop_->Post([&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

 private:
  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
};

TEST(SoftCompletionChannel, UnwatchedChannelSignalsItsFdOncePerArming) {
  auto ch = *SoftCompletionChannel::Create(nullptr);
  SoftCq cq(16, nullptr, ch.get());
  EXPECT_FALSE(Readable(ch->fd()));
  ASSERT_TRUE(cq.RequestNotify(false).ok());
  cq.Push(Wc(1), false);
  cq.Push(Wc(2), false);  // not re-armed: no second event
  EXPECT_TRUE(Readable(ch->fd()));
  auto got = ch->GetEvent();
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, &cq);
  EXPECT_FALSE(ch->GetEvent().ok());
  EXPECT_FALSE(Readable(ch->fd()));  // drained
  rdma::WorkCompletion out[4];
  EXPECT_EQ(cq.Poll(out), 2);
}

TEST(SoftCompletionChannel, WatcherOnTheDeviceLoopIsCalledWithoutTheFd) {
  LoopThread lt;
  auto ch = *SoftCompletionChannel::Create(lt.loop());
  auto cq = std::make_unique<SoftCq>(16, nullptr, ch.get());
  int calls = 0;
  bool fd_readable_in_watcher = true;
  std::promise<void> called;
  lt.On([&] {
    ASSERT_TRUE(ch->Watch(lt.loop(), [&] {
                    ++calls;
                    fd_readable_in_watcher = Readable(ch->fd());
                    while (ch->GetEvent().ok()) {
                    }
                    called.set_value();
                  }).ok());
    ASSERT_TRUE(cq->RequestNotify(false).ok());
    cq->Push(Wc(1), false);
    ASSERT_TRUE(cq->RequestNotify(false).ok());
    cq->Push(Wc(2), false);  // a second event in the same batch: one call for both
    EXPECT_EQ(calls, 0);     // not from inside the producer's work
  });
  called.get_future().wait();
  lt.On([&] {
    EXPECT_EQ(calls, 1);
    EXPECT_FALSE(fd_readable_in_watcher);  // no eventfd write, no epoll wakeup
    ch->Unwatch(lt.loop());
    cq.reset();
    ch.reset();
  });
}

TEST(SoftCompletionChannel, WatcherMayDestroyTheChannelFromInsideItsCall) {
  LoopThread lt;
  auto ch = std::make_shared<std::unique_ptr<SoftCompletionChannel>>(
      *SoftCompletionChannel::Create(lt.loop()));
  auto cq =
      std::make_shared<std::unique_ptr<SoftCq>>(std::make_unique<SoftCq>(16, nullptr, ch->get()));
  std::promise<void> called;
  lt.On([&] {
    ASSERT_TRUE((*ch)
                    ->Watch(lt.loop(),
                            [ch, cq, &called, loop = lt.loop()] {
                              (*ch)->Unwatch(loop);
                              cq->reset();
                              ch->reset();  // the owner goes away mid-call
                              called.set_value();
                            })
                    .ok());
    ASSERT_TRUE((*cq)->RequestNotify(false).ok());
    (*cq)->Push(Wc(1), false);
  });
  called.get_future().wait();
  lt.On([&] { EXPECT_EQ(*ch, nullptr); });
}

TEST(SoftCompletionChannel, WatcherGoneBeforeTheDeferredCallIsNotCalled) {
  LoopThread lt;
  auto ch = *SoftCompletionChannel::Create(lt.loop());
  SoftCq cq(16, nullptr, ch.get());
  int calls = 0;
  lt.On([&] {
    ASSERT_TRUE(ch->Watch(lt.loop(), [&] { ++calls; }).ok());
    ASSERT_TRUE(cq.RequestNotify(false).ok());
    cq.Push(Wc(1), false);
    ch->Unwatch(lt.loop());  // before the batch ends
  });
  lt.On([] {});
  EXPECT_EQ(calls, 0);
  EXPECT_FALSE(Readable(ch->fd()));
}

TEST(SoftCompletionChannel, WatcherOnAnotherLoopGoesThroughTheFd) {
  LoopThread device_loop, consumer_loop;
  auto ch = *SoftCompletionChannel::Create(device_loop.loop());
  SoftCq cq(16, nullptr, ch.get());
  std::promise<void> called;
  consumer_loop.On([&] {
    ASSERT_TRUE(ch->Watch(consumer_loop.loop(), [&] {
                    while (ch->GetEvent().ok()) {
                    }
                    called.set_value();
                  }).ok());
  });
  device_loop.On([&] {
    ASSERT_TRUE(cq.RequestNotify(false).ok());
    cq.Push(Wc(1), false);
    EXPECT_TRUE(Readable(ch->fd()));
  });
  called.get_future().wait();
  consumer_loop.On([&] { ch->Unwatch(consumer_loop.loop()); });
}

// Regression: a connection torn down with its DISCONNECTED event still queued left the
// CM channel's eventfd readable with no event behind it, and the target's loop spun at
// 100% CPU until the next iSER connection.
TEST(SoftCmEventChannel, FdIsNotLeftReadableWhenAnIdTakesItsEventsAway) {
  auto loop = *EventLoop::Create();
  std::unique_ptr<SoftDevice> dev = OpenDevice(loop.get());
  std::unique_ptr<rdma::CmEventChannel> ch = *CreateEventChannel(dev.get());
  std::unique_ptr<rdma::CmId> keep = *ch->CreateId(nullptr);
  std::unique_ptr<rdma::CmId> gone = *ch->CreateId(nullptr);
  auto* soft = static_cast<SoftCmEventChannel*>(ch.get());
  rdma::CmEvent e;
  e.type = rdma::CmEventType::kDisconnected;
  e.id = gone.get();
  soft->Push(std::move(e));
  EXPECT_TRUE(Readable(ch->fd()));
  gone.reset();
  EXPECT_FALSE(Readable(ch->fd()));
  EXPECT_FALSE(ch->GetEvent().ok());

  // Another id's event still pending keeps the fd readable, until it is taken.
  rdma::CmEvent a, b;
  a.type = b.type = rdma::CmEventType::kDisconnected;
  a.id = keep.get();
  gone = *ch->CreateId(nullptr);
  b.id = gone.get();
  soft->Push(std::move(a));
  soft->Push(std::move(b));
  gone.reset();
  EXPECT_TRUE(Readable(ch->fd()));
  auto got = ch->GetEvent();
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->id, keep.get());
  EXPECT_FALSE(Readable(ch->fd()));
}

TEST(SoftCompletionChannel, FdIsNotLeftReadableWhenACqGoesAway) {
  auto ch = *SoftCompletionChannel::Create(nullptr);
  auto cq = std::make_unique<SoftCq>(16, nullptr, ch.get());
  ASSERT_TRUE(cq->RequestNotify(false).ok());
  cq->Push(Wc(1), false);
  EXPECT_TRUE(Readable(ch->fd()));
  cq.reset();
  EXPECT_FALSE(Readable(ch->fd()));
}

}  // namespace
}  // namespace iser::softiwarp
