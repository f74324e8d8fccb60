// A blocking wrapper around Session + LunHandle for tools and tests: it runs its own
// event loop thread and posts every call there. Not for the data path of the node
// plugin (which drives LunHandle from its own loop).
#ifndef ISER_INITIATOR_SYNC_INITIATOR_H_
#define ISER_INITIATOR_SYNC_INITIATOR_H_

#include <map>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "iser/base/event_loop.h"
#include "iser/initiator/lun_handle.h"
#include "iser/initiator/session.h"

namespace iser::initiator {

class SyncInitiator {
 public:
  // Starts a loop thread, connects and logs in. An empty transport_factory means TCP.
  static absl::StatusOr<std::unique_ptr<SyncInitiator>> Connect(SessionConfig config);
  // A discovery session: SendTargets=All.
  static absl::StatusOr<std::vector<DiscoveredTarget>> Discover(SessionConfig config);
  ~SyncInitiator();  // logs out (if still logged in) and stops the thread

  // Attaches a LUN (owned by this object; valid until it is destroyed).
  absl::StatusOr<LunHandle*> OpenLun(uint64_t lun);
  absl::Status Read(LunHandle* lun, uint64_t lba, std::span<uint8_t> buffer);
  absl::Status Write(LunHandle* lun, uint64_t lba, std::span<const uint8_t> data);
  absl::Status Flush(LunHandle* lun);
  absl::Status Unmap(LunHandle* lun, uint64_t lba, uint64_t blocks);
  absl::Status Logout();

  // Runs `fn` on the loop thread and waits for it.
  void RunOnLoop(absl::AnyInvocable<void()> fn);
  // Runs `start` on the loop thread and waits for the status it reports.
  absl::Status Wait(absl::AnyInvocable<void(IoCallback)> start);

  Session* session() const { return session_.get(); }
  EventLoop* loop() const { return loop_.get(); }

 private:
  SyncInitiator() = default;

  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
  std::unique_ptr<Session> session_;
  std::vector<std::unique_ptr<LunHandle>> luns_;
  bool logged_out_ = false;
};

}  // namespace iser::initiator

#endif  // ISER_INITIATOR_SYNC_INITIATOR_H_
