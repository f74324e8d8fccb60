#include "iser/initiator/sync_initiator.h"

#include <future>

#include "iser/transport/tcp/tcp_initiator_connection.h"

namespace iser::initiator {
namespace {

absl::StatusOr<std::unique_ptr<EventLoop>> StartLoop(std::thread* thread) {
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = EventLoop::Create();
  if (!loop.ok()) return loop.status();
  EventLoop* raw = loop->get();
  *thread = std::thread([raw] { raw->Run(); });
  return loop;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SyncInitiator>> SyncInitiator::Connect(SessionConfig config) {
  if (!config.transport_factory) config.transport_factory = transport::TcpTransportFactory();
  std::unique_ptr<SyncInitiator> s(new SyncInitiator());
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = StartLoop(&s->thread_);
  if (!loop.ok()) return loop.status();
  s->loop_ = std::move(*loop);
  SyncInitiator* raw = s.get();
  absl::Status st = s->Wait([raw, config = std::move(config)](IoCallback done) mutable {
    raw->session_ = std::make_unique<Session>(raw->loop_.get(), std::move(config));
    raw->session_->Login(std::move(done));
  });
  if (!st.ok()) {
    s->logged_out_ = true;
    return st;
  }
  return s;
}

absl::StatusOr<std::vector<DiscoveredTarget>> SyncInitiator::Discover(SessionConfig config) {
  if (!config.transport_factory) config.transport_factory = transport::TcpTransportFactory();
  std::thread thread;
  absl::StatusOr<std::unique_ptr<EventLoop>> loop = StartLoop(&thread);
  if (!loop.ok()) return loop.status();
  std::promise<absl::StatusOr<std::vector<DiscoveredTarget>>> p;
  EventLoop* raw = loop->get();
  raw->Post([&p, raw, config = std::move(config)]() mutable {
    initiator::Discover(raw, std::move(config),
                        [&p](absl::StatusOr<std::vector<DiscoveredTarget>> r) {
                          p.set_value(std::move(r));
                        });
  });
  absl::StatusOr<std::vector<DiscoveredTarget>> result = p.get_future().get();
  // Let the discovery session's deferred teardown run before stopping.
  raw->Post([raw] { raw->Post([raw] { raw->Stop(); }); });
  thread.join();
  return result;
}

SyncInitiator::~SyncInitiator() {
  if (!loop_) return;
  if (session_ && !logged_out_) (void)Logout();
  RunOnLoop([this] {
    luns_.clear();
    session_.reset();
  });
  loop_->Post([this] { loop_->Stop(); });
  thread_.join();
}

void SyncInitiator::RunOnLoop(absl::AnyInvocable<void()> fn) {
  std::promise<void> p;
  loop_->Post([&p, &fn] {
    fn();
    p.set_value();
  });
  p.get_future().get();
}

absl::Status SyncInitiator::Wait(absl::AnyInvocable<void(IoCallback)> start) {
  std::promise<absl::Status> p;
  loop_->Post([&p, &start] { start([&p](absl::Status s) { p.set_value(s); }); });
  return p.get_future().get();
}

absl::StatusOr<LunHandle*> SyncInitiator::OpenLun(uint64_t lun) {
  absl::StatusOr<LunHandle*> result = nullptr;
  absl::Status s = Wait([this, lun, &result](IoCallback done) {
    LunHandle::Attach(session_.get(), lun,
                      [this, &result, done = std::move(done)](
                          absl::StatusOr<std::unique_ptr<LunHandle>> h) mutable {
                        if (!h.ok()) return done(h.status());
                        result = h->get();
                        luns_.push_back(std::move(*h));
                        done(absl::OkStatus());
                      });
  });
  if (!s.ok()) return s;
  return result;
}

absl::Status SyncInitiator::Read(LunHandle* lun, uint64_t lba, std::span<uint8_t> buffer) {
  return Wait([=](IoCallback done) { lun->Read(lba, buffer, std::move(done)); });
}

absl::Status SyncInitiator::Write(LunHandle* lun, uint64_t lba, std::span<const uint8_t> data) {
  return Wait([=](IoCallback done) { lun->Write(lba, data, std::move(done)); });
}

absl::Status SyncInitiator::Flush(LunHandle* lun) {
  return Wait([=](IoCallback done) { lun->Flush(std::move(done)); });
}

absl::Status SyncInitiator::Unmap(LunHandle* lun, uint64_t lba, uint64_t blocks) {
  return Wait([=](IoCallback done) { lun->Unmap(lba, blocks, std::move(done)); });
}

absl::Status SyncInitiator::Logout() {
  logged_out_ = true;
  return Wait([this](IoCallback done) { session_->Logout(std::move(done)); });
}

}  // namespace iser::initiator
