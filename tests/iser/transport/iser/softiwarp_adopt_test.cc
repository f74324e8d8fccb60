// Software iWARP's port-sharing entry: a listening CM id without a socket of its own
// takes TCP connections someone else accepted, with the bytes already read from them.
#include <poll.h>
#include <sys/socket.h>

#include <future>
#include <thread>

#include "gtest/gtest.h"
#include "iser/base/event_loop.h"
#include "iser/transport/rdma/softiwarp/cm.h"
#include "iser/transport/rdma/softiwarp/softiwarp.h"
#include "iser/transport/tcp/tcp_listener.h"
#include "tests/iser/transport/iser/iser_test_initiator.h"

namespace iser::iser_transport {
namespace {

class AdoptTest : public ::testing::TestWithParam<size_t> {
 protected:
  void SetUp() override {
    loop_ = std::move(*EventLoop::Create());
    dev_ = softiwarp::OpenDevice(loop_.get());
    ch_ = *softiwarp::CreateEventChannel(dev_.get());
    pd_ = *dev_->AllocPd();
    cch_ = *dev_->CreateCompletionChannel();
    cq_ = *dev_->CreateCq(64, nullptr, cch_.get());
    listen_id_ = *ch_->CreateId(nullptr);
    ASSERT_TRUE(Soft(listen_id_.get())->ListenOnAdoptedSockets().ok());
    // A second adopt-listen on the same id is refused; adopting on an idle id too.
    EXPECT_FALSE(Soft(listen_id_.get())->ListenOnAdoptedSockets().ok());
    auto idle = *ch_->CreateId(nullptr);
    EXPECT_FALSE(Soft(idle.get())->AdoptAcceptedSocket(UniqueFd(-1)).ok());
    size_t preread = GetParam();
    auto l = transport::TcpListener::Create(
        loop_.get(), "127.0.0.1:0", [this, preread](UniqueFd fd, std::string, std::string) {
          std::vector<uint8_t> bytes(preread);
          size_t got = 0;
          while (got < preread) {
            pollfd p{fd.get(), POLLIN, 0};
            if (::poll(&p, 1, 2000) <= 0) break;
            ssize_t n = ::recv(fd.get(), bytes.data() + got, preread - got, 0);
            if (n <= 0) break;
            got += static_cast<size_t>(n);
          }
          bytes.resize(got);
          preread_got_ = got;
          adopt_status_ = Soft(listen_id_.get())->AdoptAcceptedSocket(std::move(fd), bytes);
        });
    ASSERT_TRUE(l.ok());
    listener_ = std::move(*l);
    ASSERT_TRUE(loop_->AddFd(ch_->fd(), EPOLLIN, [this](uint32_t) {
      for (auto e = ch_->GetEvent(); e.ok(); e = ch_->GetEvent()) {
        if (e->type != rdma::CmEventType::kConnectRequest) continue;
        accepted_ = std::move(e->new_id);
        request_pd_ = e->param.private_data;
        peer_ = Soft(accepted_.get())->peer_address();
        rdma::QpInitAttr attr;
        attr.send_cq = cq_.get();
        attr.recv_cq = cq_.get();
        ASSERT_TRUE(accepted_->CreateQp(pd_.get(), attr).ok());
        rdma::ConnParam p;
        p.private_data = {0x80, 0, 0, 0};
        ASSERT_TRUE(accepted_->Accept(p).ok());
      }
    }).ok());
    const std::string& a = listener_->address();
    port_ = static_cast<uint16_t>(std::stoi(a.substr(a.rfind(':') + 1)));
    thread_ = std::thread([this] { loop_->Run(); });
    // The initiator runs on its own loop: the accept callback blocks reading.
    initiator_loop_ = std::move(*EventLoop::Create());
    initiator_thread_ = std::thread([this] { initiator_loop_->Run(); });
  }
  void TearDown() override {
    initiator_.reset();
    initiator_loop_->Stop();
    initiator_thread_.join();
    loop_->Post([this] {
      loop_->RemoveFd(ch_->fd());
      listener_.reset();
      accepted_.reset();
      listen_id_.reset();
      cq_.reset();
      cch_.reset();
      pd_.reset();
      ch_.reset();
      dev_.reset();
      loop_->Stop();
    });
    thread_.join();
  }
  static softiwarp::SoftCmId* Soft(rdma::CmId* id) { return static_cast<softiwarp::SoftCmId*>(id); }

  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<softiwarp::SoftDevice> dev_;
  std::unique_ptr<rdma::CmEventChannel> ch_;
  std::unique_ptr<rdma::ProtectionDomain> pd_;
  std::unique_ptr<rdma::CompletionChannel> cch_;
  std::unique_ptr<rdma::CompletionQueue> cq_;
  std::unique_ptr<rdma::CmId> listen_id_;
  std::unique_ptr<rdma::CmId> accepted_;
  std::unique_ptr<transport::TcpListener> listener_;
  absl::Status adopt_status_;
  size_t preread_got_ = 0;
  std::unique_ptr<EventLoop> initiator_loop_;
  std::thread initiator_thread_;
  std::vector<uint8_t> request_pd_;
  std::string peer_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::unique_ptr<testing::IserTestInitiator> initiator_;
};

TEST_P(AdoptTest, HandshakeCompletesWithPrereadBytes) {
  initiator_ = std::make_unique<testing::IserTestInitiator>(initiator_loop_.get());
  ASSERT_TRUE(initiator_->Connect(port_, 0xC0));
  EXPECT_TRUE(adopt_status_.ok()) << adopt_status_;
  EXPECT_EQ(preread_got_, GetParam());
  ASSERT_EQ(request_pd_.size(), 4u);  // the ULP's part; the MPA v2 word is hidden
  EXPECT_EQ(request_pd_[0], 0xC0);
  EXPECT_EQ(peer_.rfind("127.0.0.1:", 0), 0u) << peer_;
}

// 0: nothing read; 1: the sniffed byte; 16: the whole key; 28: the whole v2 Request
// (20-byte header + IRD/ORD word + 4-byte iser_cm_hdr).
INSTANTIATE_TEST_SUITE_P(Preread, AdoptTest, ::testing::Values(0, 1, 16, 27, 28));

}  // namespace
}  // namespace iser::iser_transport
