package sim

import "net/http"

func (s *Server) newAPI() http.Handler { return http.NewServeMux() }
