"""The review controls of ``index.html``: a verdict and a note per sample, kept in the browser, saved as ``qc_review.yaml``.

Per sample row: three buttons ``pass`` / ``fail`` / ``unsure`` (a second click on the chosen one
clears it) and a note field. Above the table: the reviewer's name, **download review** (saves
``qc_review.yaml`` in the format of :mod:`utils.review.review_file`), **load review** (a file
input: the page is opened as ``file://``, so it cannot fetch a file beside it), **discard browser
marks** and a filter by verdict.

While reviewing, the marks live in the browser's ``localStorage`` under
``qc_review:<report digest>`` — the digest of this report's ``dataset_card.json``, so two reports
never share marks and a report rebuilt from the same data finds them again. The first visit starts
from the review file the report was built with (``--review`` or ``root_dir/descriptor/qc_review.yaml``),
embedded in the page as JSON. Everything is plain inline JavaScript: no CDN, no server.

The page reads the YAML it writes (block style, double-quoted strings), the flow style of the
format's documentation (``{verdict: fail, note: "…", reviewer: …, date: 2026-11-24}``) and JSON;
other YAML features (anchors, block text, lists) are refused with the line number.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from utils.review.review_file import VERDICTS, QcReview

__all__ = ["REVIEW_CSS", "REVIEW_JS", "review_cell", "review_controls", "review_data_script"]

REVIEW_CSS = """
.review-bar{margin:.5em 0;padding:.4em .6em;background:#eef3fb;border:1px solid #c9d6ea;border-radius:4px}
.review-bar input[type=text]{width:12em;padding:2px}.review-bar .file{cursor:pointer;text-decoration:underline}
.review-bar .file input{display:none}#review-message.error{color:#a00000}
td.review{white-space:nowrap;min-width:15em}
td.review button{font-size:12px;padding:1px 6px;margin:0 1px 2px 0;border:1px solid #bbb;background:#fff;border-radius:3px;cursor:pointer}
td.review button.on[data-v=pass]{background:#cdeccd;border-color:#3a8a3a}
td.review button.on[data-v=fail]{background:#f6c4c4;border-color:#a12a2a;font-weight:bold}
td.review button.on[data-v=unsure]{background:#fbe7b0;border-color:#9a7500}
td.review input.note{display:block;width:14em;font-size:12px;padding:1px 3px}
tr[data-verdict=fail] td{background:#fff0f0}
"""

#: Reads the embedded review data, keeps the marks in localStorage, downloads and loads review files.
REVIEW_JS = r"""
(function(){
  var holder=document.getElementById('qc-review-data');if(!holder)return;
  var data=JSON.parse(holder.textContent),KEY='qc_review:'+data.report_digest,VERDICTS=['pass','fail','unsure'];
  var ID_RE=/^[A-Za-z0-9][A-Za-z0-9._-]*$/,DATE_RE=/^\d{4}-\d{2}-\d{2}$/;
  var table=document.getElementById('samples'),rows={},state={};
  Array.prototype.forEach.call(table.tBodies[0].rows,function(r){rows[r.getAttribute('data-id')]=r;});
  var reviewer=document.getElementById('reviewer'),message=document.getElementById('review-message');
  var counts=document.getElementById('review-counts'),filter=document.getElementById('verdict-filter');
  function pad(n){return (n<10?'0':'')+n;}
  function today(){var d=new Date();return d.getFullYear()+'-'+pad(d.getMonth()+1)+'-'+pad(d.getDate());}
  function copy(o){var c={};for(var k in o)c[k]=o[k];return c;}
  function fileState(){var s={},f=(data.file&&data.file.reviews)||{};for(var id in f)s[id]=copy(f[id]);return s;}
  function save(){try{localStorage.setItem(KEY,JSON.stringify({reviews:state}));}catch(e){}}
  function say(text,bad){message.textContent=text;message.className=bad?'error':'';}
  function render(id){var r=rows[id];if(!r)return;var e=state[id],cell=r.querySelector('td.review');
    Array.prototype.forEach.call(cell.querySelectorAll('button'),function(b){b.classList.toggle('on',!!e&&b.getAttribute('data-v')===e.verdict);});
    var note=cell.querySelector('input.note');note.disabled=!e;if(document.activeElement!==note)note.value=e?(e.note||''):'';
    note.title=e?(e.verdict+(e.reviewer?' by '+e.reviewer:'')+' on '+e.date):'choose a verdict first';
    if(e)r.setAttribute('data-verdict',e.verdict);else r.removeAttribute('data-verdict');
    cell.setAttribute('data-sort',e?e.verdict:'');}
  function refresh(){for(var id in rows)render(id);var n={pass:0,fail:0,unsure:0},total=0;
    for(var k in state){n[state[k].verdict]++;total++;}
    var inPage=Object.keys(rows).filter(function(id){return state[id];}).length;
    counts.textContent=total+' reviewed ('+n.fail+' fail, '+n.pass+' pass, '+n.unsure+' unsure); '+(Object.keys(rows).length-inPage)+' of '+Object.keys(rows).length+' samples not reviewed';
    var f=document.getElementById('filter');if(f)f.dispatchEvent(new Event('input'));}
  window.qcReviewFilter=function(r){var v=filter.value;if(!v)return true;var e=state[r.getAttribute('data-id')];
    return v==='none'?!e:(!!e&&e.verdict===v);};
  window.qcReviewText=function(r){var e=state[r.getAttribute('data-id')];return e?' '+e.verdict+' '+(e.note||''):'';};
  function mark(id,verdict){if(state[id]&&state[id].verdict===verdict)delete state[id];
    else state[id]={verdict:verdict,note:state[id]?state[id].note:'',reviewer:reviewer.value.trim(),date:today()};
    save();refresh();}
  table.addEventListener('click',function(ev){var b=ev.target.closest('td.review button');if(!b)return;
    mark(b.closest('tr').getAttribute('data-id'),b.getAttribute('data-v'));});
  table.addEventListener('input',function(ev){var n=ev.target;if(!n.classList||!n.classList.contains('note'))return;
    var id=n.closest('tr').getAttribute('data-id');if(!state[id])return;
    state[id].note=n.value;state[id].reviewer=reviewer.value.trim();state[id].date=today();save();});
  table.addEventListener('change',function(ev){if(ev.target.classList&&ev.target.classList.contains('note'))refresh();});
  try{reviewer.value=localStorage.getItem('qc_review_reviewer')||'';}catch(e){}
  reviewer.addEventListener('input',function(){try{localStorage.setItem('qc_review_reviewer',reviewer.value);}catch(e){}});
  filter.addEventListener('change',refresh);
  // ---- the file format (docs/qc-review.md): writing
  function q(s){return JSON.stringify(String(s)).replace(/[\u007f-\u009f\u2028\u2029\ufeff\ufffe\uffff]/g,
    function(c){return '\\u'+('000'+c.charCodeAt(0).toString(16)).slice(-4);});}
  function toYaml(){var lines=['# QC review written by the QC page of utils/qc_report.py (format: docs/qc-review.md)','version: 1',
      'dataset: '+(data.dataset==null?'null':q(data.dataset)),'report_digest: '+(data.report_digest==null?'null':q(data.report_digest))];
    var ids=Object.keys(state).sort();if(!ids.length)lines.push('reviews: {}');else lines.push('reviews:');
    ids.forEach(function(id){var e=state[id];lines.push('  '+q(id)+':');
      ['verdict','note','reviewer','date'].forEach(function(k){lines.push('    '+k+': '+q(e[k]==null?'':e[k]));});});
    return lines.join('\n')+'\n';}
  document.getElementById('review-download').addEventListener('click',function(){
    var a=document.createElement('a');a.href=URL.createObjectURL(new Blob([toYaml()],{type:'application/x-yaml'}));
    a.download='qc_review.yaml';document.body.appendChild(a);a.click();
    setTimeout(function(){URL.revokeObjectURL(a.href);a.remove();},1000);
    say('saved qc_review.yaml ('+Object.keys(state).length+' samples); put it at root_dir/descriptor/qc_review.yaml',false);});
  // ---- reading: the YAML this page writes, the documented flow style, or JSON
  function parseYaml(text){
    var items=[],i=0;
    function fail(msg,ln){throw new Error('line '+(ln+1)+': '+msg);}
    function strip(s){var qc=null;for(var k=0;k<s.length;k++){var c=s[k];
        if(qc){if(qc==='"'&&c==='\\'){k++;continue;}if(c===qc){if(qc==="'"&&s[k+1]==="'"){k++;continue;}qc=null;}}
        else if(c==='"'||c==="'")qc=c;else if(c==='#'&&(k===0||s[k-1]===' '||s[k-1]==='\t'))return s.slice(0,k);}
      return s;}
    text.replace(/^\ufeff/,'').replace(/\r\n?/g,'\n').split('\n').forEach(function(raw,ln){var s=strip(raw);
      if(/^\s*$/.test(s)||/^(---|\.\.\.)\s*$/.test(s))return;var lead=s.match(/^[ \t]*/)[0];
      if(lead.indexOf('\t')>=0)fail('tab in the indentation',ln);items.push({ind:lead.length,text:s.slice(lead.length).replace(/\s+$/,''),ln:ln});});
    function Sc(s,ln){this.s=s;this.i=0;this.ln=ln;}
    Sc.prototype.ws=function(){while(this.s[this.i]===' '||this.s[this.i]==='\t')this.i++;};
    Sc.prototype.end=function(){return this.i>=this.s.length;};
    Sc.prototype.quoted=function(){var s=this.s,qc=s[this.i],out='',k=this.i+1,ESC={n:'\n',t:'\t',r:'\r','"':'"','\\':'\\','/':'/',
        b:'\b',f:'\f','0':'\0',' ':' ',e:'\x1b',a:'\x07',v:'\x0b',N:'\x85',_:'\xa0',L:'\u2028',P:'\u2029'};
      while(k<s.length){var c=s[k];
        if(qc==="'"){if(c==="'"){if(s[k+1]==="'"){out+="'";k+=2;continue;}this.i=k+1;return out;}out+=c;k++;continue;}
        if(c==='"'){this.i=k+1;return out;}
        if(c==='\\'){var e=s[k+1],len={x:2,u:4,U:8}[e];if(e in ESC){out+=ESC[e];k+=2;continue;}
          var h=len?s.substr(k+2,len):'';if(!len||h.length!==len||!/^[0-9a-fA-F]+$/.test(h))fail('unknown escape \\'+e,this.ln);
          out+=String.fromCodePoint(parseInt(h,16));k+=2+len;continue;}
        out+=c;k++;}
      fail('text not closed by '+qc+' (text over several lines is not supported here)',this.ln);};
    Sc.prototype.plain=function(flow){var s=this.s,k=this.i;
      while(k<s.length){var c=s[k];if(c===':'&&(k+1===s.length||s[k+1]===' '||(flow&&',}]'.indexOf(s[k+1])>=0)))break;
        if(flow&&(c===','||c==='}'||c===']'))break;k++;}
      var v=s.slice(this.i,k).trim();this.i=k;return v;};
    Sc.prototype.key=function(flow){this.ws();var c=this.s[this.i],k=(c==='"'||c==="'")?this.quoted():this.plain(flow);
      this.ws();if(this.s[this.i]!==':')fail('"key: value" expected',this.ln);this.i++;return k;};
    Sc.prototype.value=function(flow){this.ws();var c=this.s[this.i];
      if(c==='{')return this.map();if(c==='[')return this.seq();if(c==='"'||c==="'")return this.quoted();
      if(c&&'|>&*!%@`'.indexOf(c)>=0)fail('"'+c+'": block text, anchors and tags are not part of a review file',this.ln);
      var v=this.plain(flow);return (v===''||v==='~'||/^(null|Null|NULL)$/.test(v))?null:v;};
    Sc.prototype.map=function(){var o=Object.create(null);this.i++;this.ws();if(this.s[this.i]==='}'){this.i++;return o;}
      for(;;){var k=this.key(true);if(k in o)fail('key "'+k+'" is given twice',this.ln);o[k]=this.value(true);this.ws();
        var c=this.s[this.i++];if(c==='}')return o;if(c!==',')fail('"," or "}" expected (a mapping over several lines is not supported here)',this.ln);}};
    Sc.prototype.seq=function(){var a=[];this.i++;this.ws();if(this.s[this.i]===']'){this.i++;return a;}
      for(;;){a.push(this.value(true));this.ws();var c=this.s[this.i++];if(c===']')return a;if(c!==',')fail('"," or "]" expected',this.ln);}};
    function block(ind){var o=Object.create(null);
      while(i<items.length&&items[i].ind>=ind){var it=items[i];if(it.ind>ind)fail('unexpected indentation',it.ln);
        if(it.text[0]==='-')fail('a list is not part of a review file',it.ln);
        var sc=new Sc(it.text,it.ln),k=sc.key(false),v;sc.ws();i++;
        if(sc.end())v=(i<items.length&&items[i].ind>ind)?block(items[i].ind):null;
        else{v=sc.value(false);sc.ws();if(!sc.end())fail('unexpected text after the value',it.ln);}
        if(k in o)fail('key "'+k+'" is given twice',it.ln);o[k]=v;}
      return o;}
    if(!items.length)return null;
    if(items[0].text[0]==='{'&&items.length===1){var sc=new Sc(items[0].text,items[0].ln);return sc.map();}
    var doc=block(items[0].ind);if(i<items.length)fail('unexpected indentation',items[i].ln);return doc;}
  function isDate(s){if(!DATE_RE.test(s))return false;var d=new Date(s+'T00:00:00Z');return !isNaN(d)&&d.toISOString().slice(0,10)===s;}
  function validate(doc){var problems=[],out={};
    if(!doc||typeof doc!=='object'||Array.isArray(doc))throw new Error('not a mapping with "reviews"');
    Object.keys(doc).forEach(function(k){if(['version','dataset','report_digest','reviews'].indexOf(k)<0)problems.push('unknown key "'+k+'"');});
    if(doc.version!=null&&String(doc.version)!=='1')problems.push('version '+doc.version+' is not 1');
    var rv=doc.reviews||{};if(typeof rv!=='object'||Array.isArray(rv))throw new Error('"reviews" is not a mapping');
    Object.keys(rv).forEach(function(id){var e=rv[id];
      if(!ID_RE.test(id)){problems.push('sample ID "'+id+'" is not a sample-folder name');return;}
      if(!e||typeof e!=='object'||Array.isArray(e)){problems.push('sample '+id+': not a mapping {verdict, note, reviewer, date}');return;}
      Object.keys(e).forEach(function(k){if(['verdict','note','reviewer','date'].indexOf(k)<0)problems.push('sample '+id+': unknown key "'+k+'"');});
      if(VERDICTS.indexOf(e.verdict)<0)problems.push('sample '+id+': verdict "'+e.verdict+'" is not one of pass, fail, unsure');
      if(!isDate(String(e.date)))problems.push('sample '+id+': date "'+e.date+'" is not a date YYYY-MM-DD');
      ['note','reviewer'].forEach(function(k){if(e[k]!=null&&typeof e[k]!=='string')problems.push('sample '+id+': '+k+' is not text');});
      out[id]={verdict:e.verdict,note:e.note||'',reviewer:e.reviewer||'',date:String(e.date)};});
    if(problems.length)throw new Error(problems.slice(0,3).join('; ')+(problems.length>3?' (and '+(problems.length-3)+' more)':''));
    return out;}
  document.getElementById('review-load').addEventListener('change',function(ev){var f=ev.target.files[0];if(!f)return;
    var reader=new FileReader();
    reader.onload=function(){var doc,loaded;
      try{var text=String(reader.result);try{doc=JSON.parse(text);}catch(e){doc=parseYaml(text);}loaded=validate(doc);}
      catch(e){say(f.name+': '+e.message+'; nothing was loaded',true);ev.target.value='';return;}
      var ids=Object.keys(loaded),other=doc.report_digest&&doc.report_digest!==data.report_digest;
      ids.forEach(function(id){state[id]=loaded[id];});save();refresh();
      var missing=ids.filter(function(id){return !rows[id];}).length;
      say('loaded '+ids.length+' marks from '+f.name+(other?' (made on another report: its digest differs)':'')+
        (missing?'; '+missing+' of them name samples not in this page (kept in the download)':''),false);
      ev.target.value='';};
    reader.readAsText(f);});
  document.getElementById('review-reset').addEventListener('click',function(){state=fileState();
    try{localStorage.removeItem(KEY);}catch(e){}refresh();say('browser marks discarded: '+(data.file?'the review file\'s verdicts are shown':'no marks'),false);});
  var stored=null;try{stored=JSON.parse(localStorage.getItem(KEY)||'null');}catch(e){}
  state=(stored&&stored.reviews&&typeof stored.reviews==='object')?stored.reviews:fileState();
  refresh();
})();
"""


def review_cell(entry: dict[str, str] | None) -> str:
    """The review cell of one sample row, showing the review file's verdict (the script takes over from there)."""
    verdict = entry["verdict"] if entry else ""
    on = ' class="on"'
    buttons = "".join(f'<button type="button" data-v="{v}"{on if v == verdict else ""}>{v}</button>' for v in VERDICTS)
    note = escape(entry.get("note", "")) if entry else ""
    disabled = "" if entry else " disabled"
    return f'<td class="review" data-sort="{verdict}">{buttons}<input type="text" class="note" placeholder="note" value="{note}"{disabled}></td>'


def review_controls(review: QcReview | None, digest: str, page_ids: set[str]) -> str:
    """The review bar above the sample table and the line about the review file."""
    if review is None:
        found = "No review file: marks are kept in this browser until you download them."
    else:
        same = review.report_digest == digest
        where = "made on this report" if same else ("made on another report (its digest differs)" if review.report_digest else "report digest not recorded")
        unknown = sorted(set(review.entries) - page_ids)
        found = (
            f"Verdicts shown from <code>{escape(review.source)}</code>: {escape(review.describe())}; {where}."
            + (f" {len(unknown)} reviewed sample(s) are not in this report: {escape(', '.join(unknown[:10]))}{' …' if len(unknown) > 10 else ''}." if unknown else "")
        )
    return (
        '<div class="review-bar" id="review-bar"><b>Review</b> · reviewer <input type="text" id="reviewer" placeholder="your name"> '
        '<button type="button" id="review-download">download review</button> '
        '<label class="file" title="a qc_review.yaml saved by this page (or written by hand)">load review<input type="file" id="review-load" accept=".yaml,.yml,.json"></label> '
        '<button type="button" id="review-reset">discard browser marks</button> · show <select id="verdict-filter">'
        '<option value="">all</option><option value="none">not reviewed</option><option value="pass">pass</option>'
        '<option value="fail">fail</option><option value="unsure">unsure</option></select> '
        '<span id="review-counts" class="meta"></span> <span id="review-message"></span></div>'
        f'<p class="note">{found} A verdict <b>fail</b> leaves the sample out of the next split and export once the file is at '
        "<code>root_dir/descriptor/qc_review.yaml</code> (see docs/qc-review.md).</p>"
    )


def review_data_script(dataset: str, digest: str, review: QcReview | None) -> str:
    """The embedded JSON: the report's dataset and digest, and the review file's entries."""
    data: dict[str, Any] = {"dataset": dataset, "report_digest": digest, "file": None}
    if review is not None:
        data["file"] = {"source": review.source, "report_digest": review.report_digest,
                        "reviews": {sid: e.to_dict() for sid, e in review.entries.items()}}  # fmt: skip
    text = json.dumps(data, ensure_ascii=False, sort_keys=True).replace("<", "\\u003c")  # no "</script>" inside
    return f'<script type="application/json" id="qc-review-data">{text}</script>'
