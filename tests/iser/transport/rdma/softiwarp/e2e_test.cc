// End to end: two software iWARP endpoints over loopback TCP, driven by an event loop
// on its own thread, connected through the librdmacm-shaped CM.
#include <arpa/inet.h>
#include <sys/epoll.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "iser/base/event_loop.h"
#include "iser/transport/rdma/cm.h"
#include "iser/transport/rdma/softiwarp/cm.h"
#include "iser/transport/rdma/softiwarp/softiwarp.h"
#include "iser/transport/rdma/softiwarp/crc32c.h"
#include "iser/transport/rdma/softiwarp/mpa_wire.h"
#include "iser/transport/rdma/verbs.h"
#include "tests/iser/transport/rdma/softiwarp/test_util.h"

namespace iser::softiwarp {
namespace {

using rdma::CmEventType;
using rdma::WcStatus;
using rdma::WorkCompletion;

constexpr size_t kBuf = 4 << 20;

struct Endpoint {
  void Init(EventLoop* loop, const SoftIwarpOptions& o) {
    dev = OpenDevice(loop, o);
    ch = *CreateEventChannel(dev.get());
    pd = *dev->AllocPd();
    cch = *dev->CreateCompletionChannel();
    scq = *dev->CreateCq(4096, nullptr, cch.get());
    rcq = *dev->CreateCq(4096, nullptr, cch.get());
    ASSERT_TRUE(scq->RequestNotify(false).ok());
    ASSERT_TRUE(rcq->RequestNotify(false).ok());
    buf.assign(kBuf, 0);
    mr = *pd->RegisterMemory(buf.data(), buf.size(),
                             rdma::kAccessLocalWrite | rdma::kAccessRemoteWrite |
                                 rdma::kAccessRemoteRead);
    ASSERT_TRUE(loop->AddFd(cch->fd(), EPOLLIN, [this](uint32_t) {
      for (auto cq = cch->GetEvent(); cq.ok(); cq = cch->GetEvent()) {
        (void)(*cq)->RequestNotify(false);
        WorkCompletion wc[16];
        for (int n; (n = (*cq)->Poll(wc)) > 0;) {
          for (int i = 0; i < n; ++i) (*cq == scq.get() ? send_wcs : recv_wcs).push_back(wc[i]);
        }
      }
    }).ok());
    ASSERT_TRUE(loop->AddFd(ch->fd(), EPOLLIN, [this](uint32_t) {
      for (auto e = ch->GetEvent(); e.ok(); e = ch->GetEvent()) OnCm(std::move(*e));
    }).ok());
    this->loop = loop;
  }
  void Reset() {
    loop->RemoveFd(cch->fd());
    loop->RemoveFd(ch->fd());
    conn.reset();
    listener.reset();
    mr.reset();
    scq.reset();
    rcq.reset();
    cch.reset();
    pd.reset();
    ch.reset();
    dev.reset();
  }
  rdma::QpInitAttr QpAttr() {
    rdma::QpInitAttr a;
    a.send_cq = scq.get();
    a.recv_cq = rcq.get();
    a.cap.max_send_wr = 256;
    a.cap.max_recv_wr = 256;
    return a;
  }
  void PostRecvs(int n, uint32_t size, uint64_t base_offset) {
    for (int i = 0; i < n; ++i) {
      rdma::Sge sge{Addr(base_offset + i * size), size, mr->lkey()};
      ASSERT_TRUE(conn->qp()->PostRecv({1000u + i, {&sge, 1}}).ok());
    }
  }
  void OnCm(rdma::CmEvent e) {
    events.push_back(e.type);
    switch (e.type) {
      case CmEventType::kConnectRequest: {
        request_pd = e.param.private_data;
        conn = std::move(e.new_id);
        ASSERT_TRUE(conn->CreateQp(pd.get(), QpAttr()).ok());
        PostRecvs(recvs_to_post, recv_size, 0);
        if (reject) {
          std::string why = "go away";
          ASSERT_TRUE(conn->Reject({reinterpret_cast<const uint8_t*>(why.data()), why.size()}).ok());
        } else {
          ASSERT_TRUE(conn->Accept(accept_param).ok());
        }
        break;
      }
      case CmEventType::kAddrResolved:
        ASSERT_TRUE(conn->ResolveRoute(absl::Seconds(1)).ok());
        break;
      case CmEventType::kRouteResolved:
        ASSERT_TRUE(conn->CreateQp(pd.get(), QpAttr()).ok());
        PostRecvs(recvs_to_post, recv_size, 0);
        ASSERT_TRUE(conn->Connect(connect_param).ok());
        break;
      case CmEventType::kEstablished:
        established_pd = e.param.private_data;
        break;
      case CmEventType::kRejected:
        rejected_pd = e.param.private_data;
        break;
      default:
        break;
    }
  }
  bool Has(CmEventType t) const { return std::find(events.begin(), events.end(), t) != events.end(); }
  uint64_t Addr(uint64_t off) { return reinterpret_cast<uint64_t>(buf.data()) + off; }

  EventLoop* loop = nullptr;
  std::unique_ptr<SoftDevice> dev;
  std::unique_ptr<rdma::CmEventChannel> ch;
  std::unique_ptr<rdma::ProtectionDomain> pd;
  std::unique_ptr<rdma::CompletionChannel> cch;
  std::unique_ptr<rdma::CompletionQueue> scq, rcq;
  std::unique_ptr<rdma::MemoryRegion> mr;
  std::unique_ptr<rdma::CmId> listener, conn;
  std::vector<uint8_t> buf;
  std::vector<CmEventType> events;
  std::vector<WorkCompletion> send_wcs, recv_wcs;
  std::vector<uint8_t> request_pd, established_pd, rejected_pd;
  rdma::ConnParam accept_param, connect_param;
  int recvs_to_post = 16;
  uint32_t recv_size = 64 * 1024;
  bool reject = false;
};

class E2eTest : public ::testing::Test {
 protected:
  void Start(SoftIwarpOptions o = {}) {
    loop_ = *EventLoop::Create();
    thread_ = std::thread([this] { loop_->Run(); });
    Call([&] {
      server_.Init(loop_.get(), o);
      client_.Init(loop_.get(), o);
    });
  }
  void TearDown() override {
    if (!loop_) return;
    Call([&] {
      client_.Reset();
      server_.Reset();
    });
    loop_->Stop();
    thread_.join();
  }
  void Call(std::function<void()> f) {
    std::promise<void> done;
    loop_->Post([&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }
  bool WaitFor(std::function<bool()> pred, int ms = 10000) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end) {
      bool ok = false;
      Call([&] { ok = pred(); });
      if (ok) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  }
  void Connect() {
    Call([&] {
      server_.listener = *server_.ch->CreateId(nullptr);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ASSERT_TRUE(server_.listener->Listen(a, 8).ok());
      a.sin_port = htons(server_.listener->local_port());
      client_.conn = *client_.ch->CreateId(nullptr);
      ASSERT_TRUE(client_.conn->ResolveAddr(a, absl::Seconds(1)).ok());
    });
  }
  void ConnectAndWait() {
    Connect();
    ASSERT_TRUE(WaitFor([&] {
      return client_.Has(CmEventType::kEstablished) && server_.Has(CmEventType::kEstablished);
    }));
  }
  void Fill(Endpoint& e, uint64_t off, size_t n, uint8_t seed) {
    for (size_t i = 0; i < n; ++i) e.buf[off + i] = static_cast<uint8_t>(seed + i * 13 + (i >> 8));
  }
  void PostSend(Endpoint& e, rdma::SendWr wr, uint64_t off, uint32_t len) {
    Call([&] {
      rdma::Sge sge{e.Addr(off), len, e.mr->lkey()};
      wr.sg_list = {&sge, 1};
      ASSERT_TRUE(e.conn->qp()->PostSend(wr).ok());
    });
  }

  std::unique_ptr<EventLoop> loop_;
  std::thread thread_;
  Endpoint server_, client_;
};

TEST_F(E2eTest, ConnectWithPrivateDataThenSendRecv) {
  Start();
  client_.connect_param.private_data = {0x80, 0, 0, 0};
  server_.accept_param.private_data = {0x80, 0x40, 0, 0};
  ConnectAndWait();
  EXPECT_EQ(server_.request_pd, (std::vector<uint8_t>{0x80, 0, 0, 0}));
  EXPECT_EQ(client_.established_pd, (std::vector<uint8_t>{0x80, 0x40, 0, 0}));

  const uint32_t sizes[] = {1, 100, 60000, 0, 65536};
  uint64_t src_off = 1 << 20;
  for (size_t i = 0; i < std::size(sizes); ++i) {
    Fill(client_, src_off, sizes[i], static_cast<uint8_t>(i));
    rdma::SendWr wr;
    wr.wr_id = i;
    wr.send_flags = rdma::kSendSignaled | (i == 1 ? rdma::kSendSolicited : 0);
    PostSend(client_, wr, src_off, sizes[i]);
    ASSERT_TRUE(WaitFor([&] { return server_.recv_wcs.size() == i + 1; })) << i;
    const WorkCompletion& wc = server_.recv_wcs[i];
    EXPECT_EQ(wc.status, WcStatus::kSuccess);
    EXPECT_EQ(wc.opcode, rdma::WcOpcode::kRecv);
    EXPECT_EQ(wc.wr_id, 1000u + i);
    EXPECT_EQ(wc.byte_len, sizes[i]);
    EXPECT_EQ(std::memcmp(&server_.buf[i * 65536], &client_.buf[src_off], sizes[i]), 0);
  }
  ASSERT_TRUE(WaitFor([&] { return client_.send_wcs.size() == std::size(sizes); }));
  for (size_t i = 0; i < std::size(sizes); ++i) {
    EXPECT_EQ(client_.send_wcs[i].wr_id, i);
    EXPECT_EQ(client_.send_wcs[i].status, WcStatus::kSuccess);
  }
  // And the other direction (the responder may send once it heard from us).
  Fill(server_, src_off, 5000, 77);
  rdma::SendWr wr;
  wr.wr_id = 99;
  wr.send_flags = rdma::kSendSignaled;
  PostSend(server_, wr, src_off, 5000);
  ASSERT_TRUE(WaitFor([&] { return client_.recv_wcs.size() == 1; }));
  EXPECT_EQ(client_.recv_wcs[0].byte_len, 5000u);
  EXPECT_EQ(std::memcmp(&client_.buf[0], &server_.buf[src_off], 5000), 0);
}

TEST_F(E2eTest, RdmaWriteLargeThenSend) {
  SoftIwarpOptions o;
  o.mulpdu = 1000;  // many segments
  Start(o);
  ConnectAndWait();
  const uint32_t n = 300000;
  const uint64_t dst_off = 2 << 20;
  Fill(client_, 0, n, 3);
  rdma::SendWr w;
  w.wr_id = 1;
  w.opcode = rdma::WrOpcode::kRdmaWrite;
  w.rkey = server_.mr->rkey();
  w.remote_addr = server_.Addr(dst_off);
  PostSend(client_, w, 0, n);  // unsignaled
  rdma::SendWr s;
  s.wr_id = 2;
  s.send_flags = rdma::kSendSignaled;
  PostSend(client_, s, 0, 16);
  ASSERT_TRUE(WaitFor([&] { return server_.recv_wcs.size() == 1; }));
  EXPECT_EQ(std::memcmp(&server_.buf[dst_off], &client_.buf[0], n), 0);
  ASSERT_TRUE(WaitFor([&] { return client_.send_wcs.size() == 1; }));
  EXPECT_EQ(client_.send_wcs[0].wr_id, 2u);  // the unsignaled Write is silent
}

TEST_F(E2eTest, RdmaReadLargeAndSeveralOutstandingWithinOrd) {
  SoftIwarpOptions o;
  o.mulpdu = 4000;
  Start(o);
  client_.connect_param.initiator_depth = 4;
  client_.connect_param.responder_resources = 4;
  server_.accept_param.responder_resources = 4;
  ConnectAndWait();
  // The server's data that the client reads.
  const uint32_t big = 1 << 20;
  Fill(server_, 0, big, 9);
  rdma::SendWr r;
  r.opcode = rdma::WrOpcode::kRdmaRead;
  r.send_flags = rdma::kSendSignaled;
  r.rkey = server_.mr->rkey();
  r.remote_addr = server_.Addr(0);
  r.wr_id = 1;
  PostSend(client_, r, 1 << 20, big);
  // Eight more reads of 64 KiB each; at most ORD=4 are on the wire at once.
  for (int i = 0; i < 8; ++i) {
    r.wr_id = 10 + i;
    r.remote_addr = server_.Addr(i * 65536);
    PostSend(client_, r, (2 << 20) + i * 65536, 65536);
  }
  ASSERT_TRUE(WaitFor([&] { return client_.send_wcs.size() == 9; }));
  for (size_t i = 0; i < 9; ++i) {
    EXPECT_EQ(client_.send_wcs[i].status, WcStatus::kSuccess);
    EXPECT_EQ(client_.send_wcs[i].opcode, rdma::WcOpcode::kRdmaRead);
    EXPECT_EQ(client_.send_wcs[i].wr_id, i == 0 ? 1u : 10u + i - 1);
  }
  Call([&] {
    size_t max = static_cast<SoftCmId*>(client_.conn.get())->soft_qp()->max_outstanding_reads();
    EXPECT_LE(max, 4u);
    EXPECT_GE(max, 2u);
  });
  EXPECT_EQ(std::memcmp(&client_.buf[1 << 20], &server_.buf[0], big), 0);
  EXPECT_EQ(std::memcmp(&client_.buf[2 << 20], &server_.buf[0], 8 * 65536), 0);
}

TEST_F(E2eTest, SendWithInvalidateThenWriteToInvalidatedStagTerminates) {
  Start();
  ConnectAndWait();
  // The server answers with Send with Invalidate naming the client's STag.
  rdma::SendWr s;
  s.wr_id = 5;
  s.opcode = rdma::WrOpcode::kSendWithInv;
  s.invalidate_rkey = client_.mr->rkey();
  s.send_flags = rdma::kSendSignaled;
  // The responder holds its first FPDU until the initiator's RTR has arrived.
  PostSend(server_, s, 0, 32);
  ASSERT_TRUE(WaitFor([&] { return client_.recv_wcs.size() == 1; }));
  EXPECT_EQ(client_.recv_wcs[0].status, WcStatus::kSuccess);
  EXPECT_TRUE(client_.recv_wcs[0].wc_flags & rdma::kWcWithInv);
  EXPECT_EQ(client_.recv_wcs[0].invalidated_rkey, client_.mr->rkey());
  // A later RDMA Write to it is refused with a Terminate; the connection drops.
  rdma::SendWr w;
  w.wr_id = 6;
  w.opcode = rdma::WrOpcode::kRdmaWrite;
  w.rkey = client_.mr->rkey();
  w.remote_addr = client_.Addr(0);
  PostSend(server_, w, 0, 16);
  ASSERT_TRUE(WaitFor([&] {
    return client_.Has(CmEventType::kDisconnected) && server_.Has(CmEventType::kDisconnected);
  }));
  Call([&] {
    auto* cq = static_cast<SoftCmId*>(client_.conn.get())->soft_qp();
    ASSERT_TRUE(cq->terminate_sent().has_value());
    EXPECT_EQ(cq->terminate_sent()->layer, TermLayer::kDdp);
    EXPECT_EQ(cq->terminate_sent()->etype, kDdpEtypeTagged);
    EXPECT_EQ(cq->terminate_sent()->ecode, kDdpEcodeTInvalidStag);
    auto* sq = static_cast<SoftCmId*>(server_.conn.get())->soft_qp();
    ASSERT_TRUE(sq->terminate_received().has_value());
    EXPECT_EQ(sq->terminate_received()->ecode, kDdpEcodeTInvalidStag);
  });
}

TEST_F(E2eTest, FlushOnDisconnect) {
  Start();
  server_.recvs_to_post = 4;
  ConnectAndWait();
  // A message so both directions are live, then the client disconnects.
  rdma::SendWr s;
  s.send_flags = rdma::kSendSignaled;
  PostSend(client_, s, 0, 8);
  ASSERT_TRUE(WaitFor([&] { return server_.recv_wcs.size() == 1; }));
  Call([&] { ASSERT_TRUE(client_.conn->Disconnect().ok()); });
  ASSERT_TRUE(WaitFor([&] {
    return server_.Has(CmEventType::kDisconnected) && client_.Has(CmEventType::kDisconnected) &&
           server_.recv_wcs.size() == 4 && client_.recv_wcs.size() == 16;
  }));
  for (size_t i = 1; i < 4; ++i) EXPECT_EQ(server_.recv_wcs[i].status, WcStatus::kWrFlushErr);
  for (const auto& wc : client_.recv_wcs) EXPECT_EQ(wc.status, WcStatus::kWrFlushErr);
  // Posting after the disconnect completes at once with a flush error.
  rdma::SendWr late;
  late.wr_id = 77;
  PostSend(client_, late, 0, 8);
  ASSERT_TRUE(WaitFor([&] { return client_.send_wcs.size() == 2; }));
  EXPECT_EQ(client_.send_wcs[1].wr_id, 77u);
  EXPECT_EQ(client_.send_wcs[1].status, WcStatus::kWrFlushErr);
}

TEST_F(E2eTest, RejectWithPrivateData) {
  Start();
  server_.reject = true;
  client_.connect_param.private_data = {1, 2, 3};
  Connect();
  ASSERT_TRUE(WaitFor([&] { return client_.Has(CmEventType::kRejected); }));
  EXPECT_EQ(std::string(client_.rejected_pd.begin(), client_.rejected_pd.end()), "go away");
  EXPECT_FALSE(client_.Has(CmEventType::kEstablished));
  EXPECT_EQ(server_.request_pd, (std::vector<uint8_t>{1, 2, 3}));
}

TEST_F(E2eTest, ConnectToClosedPortIsUnreachable) {
  Start();
  Call([&] {
    client_.conn = *client_.ch->CreateId(nullptr);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(1);
    ASSERT_TRUE(client_.conn->ResolveAddr(a, absl::Seconds(1)).ok());
  });
  ASSERT_TRUE(WaitFor([&] { return client_.Has(CmEventType::kUnreachable); }));
}

TEST_F(E2eTest, CrcOffAndV1Interop) {
  SoftIwarpOptions o;
  o.crc = false;
  o.enhanced = false;
  Start(o);
  ConnectAndWait();
  rdma::SendWr s;
  s.send_flags = rdma::kSendSignaled;
  Fill(client_, 0, 1000, 1);
  PostSend(client_, s, 0, 1000);
  ASSERT_TRUE(WaitFor([&] { return server_.recv_wcs.size() == 1; }));
  EXPECT_EQ(std::memcmp(&server_.buf[0], &client_.buf[0], 1000), 0);
}

// A hand-written initiator on a plain TCP socket (siw-like: MPA v2, C=0, Write+Read
// RTR offered, iser_cm_hdr private data) that then sends a hostile RDMA Write.
TEST_F(E2eTest, ForeignInitiatorHandshakeThenHostileWriteGetsTerminate) {
  Start();
  uint16_t port = 0;
  Call([&] {
    server_.listener = *server_.ch->CreateId(nullptr);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_TRUE(server_.listener->Listen(a, 8).ok());
    port = server_.listener->local_port();
  });
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

  MpaFrame req;
  req.crc = false;
  req.enhanced = true;
  req.ird = 16;
  req.ord = 16;
  req.peer_to_peer = true;
  req.rtr = kRtrWrite | kRtrRead;
  req.private_data = {0x80, 0, 0, 0};
  auto bytes = *EncodeMpaFrame(req);
  ASSERT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  auto read_exact = [&](size_t n) {
    std::vector<uint8_t> b(n);
    size_t got = 0;
    while (got < n) {
      ssize_t r = read(fd, b.data() + got, n - got);
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    b.resize(got);
    return b;
  };
  std::vector<uint8_t> hdr = read_exact(20);
  ASSERT_EQ(hdr.size(), 20u);
  EXPECT_EQ(std::string(hdr.begin(), hdr.begin() + 16), "MPA ID Rep Frame");
  EXPECT_EQ(hdr[16] & kMpaFlagCrc, kMpaFlagCrc);  // we asked for no CRC, the target wants it
  EXPECT_EQ(hdr[16] & kMpaFlagEnhanced, kMpaFlagEnhanced);
  EXPECT_EQ(hdr[16] & (kMpaFlagMarkers | kMpaFlagReject), 0);
  size_t pd_len = hdr[18] << 8 | hdr[19];
  std::vector<uint8_t> pd = read_exact(pd_len);
  ASSERT_EQ(pd.size(), 4u);  // just the IRD/ORD word
  EXPECT_EQ(pd[0] & 0x80, 0x80);  // peer-to-peer echoed
  EXPECT_EQ(pd[2] & 0xC0, 0x80);  // the responder picked a zero-length Write as RTR

  // RTR, then a Write to an STag that does not exist.
  std::vector<uint8_t> out = testing::Fpdu(testing::WriteHdr(1, 0));
  testing::Append(&out, testing::Fpdu(testing::WriteHdr(0x00DEAD01, 0x1000),
                                      std::vector<uint8_t>(64, 0xEE)));
  ASSERT_EQ(write(fd, out.data(), out.size()), static_cast<ssize_t>(out.size()));
  std::vector<uint8_t> term = read_exact(FpduLength(24 + 16 - 2));
  ASSERT_EQ(term.size(), FpduLength(24 + 16 - 2));
  EXPECT_EQ(term[3], 0x47);
  EXPECT_EQ(term[20], 0x11);  // DDP, tagged
  EXPECT_EQ(term[21], 0x00);  // invalid STag
  EXPECT_EQ(LoadCrcWire(&term[term.size() - 4]),
            ComputeCrc32c(std::span<const uint8_t>(term).first(term.size() - 4)));
  EXPECT_TRUE(read_exact(1).empty());  // then the connection closes
  close(fd);
  ASSERT_TRUE(WaitFor([&] { return server_.Has(CmEventType::kDisconnected); }));
  EXPECT_TRUE(server_.Has(CmEventType::kEstablished));
  EXPECT_EQ(server_.request_pd, (std::vector<uint8_t>{0x80, 0, 0, 0}));
  for (uint8_t b : server_.buf) ASSERT_EQ(b, 0);
}

}  // namespace
}  // namespace iser::softiwarp
