"""HTTP/2 streams given no flow-control window (catalogue S14): CONNS h2c
connections with SETTINGS_INITIAL_WINDOW_SIZE 0, STREAMS requests each
(GET /big0.bin ... /big49.bin, as many as the origin has), then read for
HOLD seconds and report when the node closed each connection. A node
must close them after its send timeout (server.send_timeout, 60 s).
Needs python-h2 (pip install h2).

    h2_zero_window.py PORT CONNS STREAMS HOLD
"""
import socket, sys, time, h2.connection, h2.config, h2.settings, h2.events
port=int(sys.argv[1]); nconn=int(sys.argv[2]); streams=int(sys.argv[3]); hold=float(sys.argv[4])
conns=[]
for c in range(nconn):
    s=socket.create_connection(("127.0.0.1",port))
    conn=h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.local_settings=h2.settings.Settings(client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE:0, h2.settings.SettingCodes.ENABLE_PUSH:0})
    conn.initiate_connection()
    s.sendall(conn.data_to_send())
    for i in range(streams):
        sid=conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method","GET"),(":path",f"/big{i%50}.bin"),(":scheme","http"),(":authority","localhost")], end_stream=True)
    s.sendall(conn.data_to_send())
    s.settimeout(0.2)
    conns.append((s,conn))
start=time.time(); headers=0; closed=0; goaway=None
alive=set(range(nconn))
while time.time()-start<hold:
    for idx,(s,conn) in enumerate(conns):
        if idx not in alive: continue
        try:
            d=s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            alive.discard(idx); continue
        if not d:
            alive.discard(idx); print(f"conn {idx} closed by node at {time.time()-start:.1f}s", flush=True); continue
        for ev in conn.receive_data(d):
            if isinstance(ev,h2.events.ResponseReceived): headers+=1
            if isinstance(ev,h2.events.ConnectionTerminated): print(f"conn {idx} GOAWAY {ev.error_code} at {time.time()-start:.1f}s", flush=True)
            if isinstance(ev,h2.events.StreamReset): pass
        s.sendall(conn.data_to_send())
print(f"after {hold}s: {len(alive)} of {nconn} connections open, {headers} response heads")
