"""A webhook receiver for the CLI tests: python3 webhook_sink.py PORT FILE appends the body of
every POST to FILE, one line each, and answers 204."""
import http.server
import sys

out = open(sys.argv[2], "a", encoding="utf-8")


class Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        out.write(self.rfile.read(n).decode() + "\n")
        out.flush()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
